//! SIGTERM to the real binary under a load of writers on keep-alive connections: every
//! request the server took gets a whole response, none is cut off, a request it did not
//! take was not executed either, and the process exits 0 within `SHUTDOWN_TIMEOUT`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::*;

const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
const WRITERS: usize = 6;

#[test]
fn sigterm_under_load_answers_every_accepted_request_whole_and_exits_0() {
    let _serial = serial();

    // Arrange: the binary with four workers, six writers at full speed.
    let db = fresh_database();
    let mut server = ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("WORKERS", "4".into()),
        ("SHUTDOWN_TIMEOUT", SHUTDOWN_TIMEOUT.as_secs().to_string()),
        ("LOG_LEVEL", "info".into()),
    ]);
    let load = Load::start(
        server.addr,
        WRITERS,
        "sigterm",
        Duration::from_secs(15),
        true,
    );
    load.wait_for("100 users created", Duration::from_secs(60), |p| {
        p.created.load(Ordering::SeqCst) >= 100
    });

    // Act: SIGTERM mid-load; the writers go on until the listener is gone.
    let signalled = Instant::now();
    server.sigterm();
    let status = server.wait_exit(SHUTDOWN_TIMEOUT + Duration::from_secs(2));
    let exited = signalled.elapsed();
    let attempts = load.join();
    let stderr = server.stderr();

    // Assert: exit 0 in time.
    let status = status.unwrap_or_else(|| {
        panic!("still running {exited:?} after SIGTERM (SHUTDOWN_TIMEOUT {SHUTDOWN_TIMEOUT:?}); stderr: {stderr}")
    });
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM; stderr: {stderr}"
    );
    assert!(
        exited <= SHUTDOWN_TIMEOUT + Duration::from_secs(1),
        "exited {exited:?} after SIGTERM"
    );

    // Assert: every response whole and a 201; every failure a connection the server
    // closed before any byte of an answer, for a request it never answered (no access
    // line with its id; the table check below shows it was not executed either).
    let mut problems = Vec::new();
    for a in &attempts {
        match &a.result {
            // The log search below is only worth something if answers are found in it.
            Ok(r) if r.status == 201 && !logs_request_id(&stderr, &a.token) => {
                problems.push(format!(
                    "a 201 missing from the access log: {}",
                    a.describe()
                ));
            }
            Ok(r) if r.status == 201 => {}
            Ok(_) => problems.push(format!("not a 201: {}", a.describe())),
            Err(f) if f.bytes_received() > 0 => problems.push(format!("cut off: {}", a.describe())),
            Err(f) if !f.closed_by_server() => {
                problems.push(format!("held, not answered: {}", a.describe()));
            }
            Err(_) if logs_request_id(&stderr, &a.token) => {
                problems.push(format!(
                    "answered in the log, not on the wire: {}",
                    a.describe()
                ));
            }
            Err(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "{} requests mishandled during the stop:\n{}\nstderr: {stderr}",
        problems.len(),
        problems.join("\n")
    );
    let last = attempts
        .iter()
        .filter(|a| a.status() == Some(201))
        .map(Attempt::finished)
        .max();
    let closing = attempts
        .iter()
        .filter(|a| a.result.as_ref().is_ok_and(HttpResponse::closes_connection))
        .count();
    let after_signal = attempts.iter().filter(|a| a.started >= signalled).count();

    // Assert: the table holds each 201 once, and nothing a refused request asked for.
    let rows = check_rows(&mut db.connect(), &attempts, |a| match a.created_id() {
        Some(id) => Expect::Exists(id),
        None => Expect::Absent,
    });
    eprintln!(
        "sigterm under load: {} requests {:?}; {after_signal} started after the signal; \
         {closing} answered with Connection: close; last 201 {:?} after the signal; \
         exit 0 after {exited:?}; rows {rows:?}",
        attempts.len(),
        histogram(&attempts),
        last.map(|t| t.saturating_duration_since(signalled)),
    );
}
