//! The "ambiguous 503" of `db_outage`'s terminated-backends test, resolved: the same load
//! of creates under sessions killed mid-statement, but every client sends an
//! `Idempotency-Key` and retries until it gets a 201 (first or replayed). A third of the
//! clients also lose their first 201 (as a dropped connection would), so every run has
//! creates that committed without their client knowing, not only those the sabotage
//! happens to make. The table must
//! then hold exactly the rows the clients asked for: one per create, with the id it was
//! told, none twice, none lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::db_outage::terminate_app_sessions_for;
use crate::support::*;

const WRITERS: usize = 4;
/// How long one create may keep retrying before the test gives up on it.
const PATIENCE: Duration = Duration::from_secs(60);

/// One create as its client saw it in the end, and what it took to get there.
struct Create {
    attempt: Attempt,
    tries: usize,
    replayed: bool,
    /// An earlier try got a 503 or no answer: without the key, its fate was unknown.
    was_ambiguous: bool,
    /// Its first 201 was treated as lost.
    lost_201: bool,
}

/// Sends one create with `key` until a 201, retrying 503s, broken connections and 409s
/// with `Retry-After` (another try with the key still running). With `lose_first_201`,
/// the first 201 counts as lost on the way back (the client cannot tell that from a 503)
/// and the client asks again.
fn create_until_told(
    client: &mut Client,
    token: &str,
    body: &[u8],
    mut lose_first_201: bool,
) -> Create {
    let started = Instant::now();
    let headers = [
        ("Content-Type", "application/json"),
        ("Idempotency-Key", token),
    ];
    let (mut tries, mut was_ambiguous, lost) = (0, false, lose_first_201);
    loop {
        tries += 1;
        let result = client.send("POST", "/user", &headers, Some(body));
        match result.as_ref().map(|r| r.status) {
            Ok(201) if lose_first_201 => {
                lose_first_201 = false;
                was_ambiguous = true;
            }
            Ok(201) => {
                let replayed = result
                    .as_ref()
                    .is_ok_and(|r| r.header("idempotent-replayed") == Some("true"));
                let attempt = Attempt {
                    token: token.to_owned(),
                    started,
                    took: started.elapsed(),
                    result,
                };
                return Create {
                    attempt,
                    tries,
                    replayed,
                    was_ambiguous,
                    lost_201: lost,
                };
            }
            // Another try with this key still running; a 409 without Retry-After would be
            // the email clash of a create applied twice.
            Ok(409)
                if result
                    .as_ref()
                    .is_ok_and(|r| r.header("retry-after").is_some()) => {}
            Ok(503) | Err(_) => was_ambiguous = true,
            Ok(status) => panic!(
                "{token}: a keyed create may be 201, 409 (in flight) or 503, not {status}: {:?}",
                result.map(|r| r.text())
            ),
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{token}: no 201 after {tries} tries"
        );
        // A short pause so a retry does not spin while the database restarts sessions.
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn keyed_creates_retried_through_killed_sessions_leave_exactly_the_rows_asked_for() {
    let _serial = serial();

    // Arrange: four writers with keys, and a saboteur ending the app's sessions.
    let app = spawn_app_with(|vars| {
        vars.insert("WORKERS".into(), "8".into());
        vars.insert("DB_POOL_SIZE".into(), "4".into());
        vars.insert("DB_POOL_TIMEOUT_MS".into(), "1000".into());
    });
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let (stop, done, addr) = (Arc::clone(&stop), Arc::clone(&done), app.addr);
            std::thread::spawn(move || {
                let mut client = Client::new(addr, Duration::from_secs(10));
                let mut creates = Vec::new();
                for seq in 0u64.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let token = format!("keyed-{t}-{seq}");
                    let body = serde_json::to_vec(&create_body(&token, "keyed", seq)).unwrap();
                    let lose = seq % 3 == 0;
                    creates.push(create_until_told(&mut client, &token, &body, lose));
                    done.fetch_add(1, Ordering::SeqCst);
                }
                creates
            })
        })
        .collect();
    let warm = poll_until(Duration::from_secs(60), || {
        (done.load(Ordering::SeqCst) >= 20).then_some(())
    });
    assert!(warm.is_some(), "20 users created before the sabotage");

    // Act: for a few seconds, pg_terminate_backend on the app's sessions, over and over.
    let terminated = terminate_app_sessions_for(&app, Duration::from_secs(6));
    stop.store(true, Ordering::SeqCst);
    let creates: Vec<Create> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("a writer panicked"))
        .collect();

    // Assert: every create exactly once, with the id it was told; nothing else.
    let ambiguous = creates.iter().filter(|c| c.was_ambiguous).count();
    let replays = creates.iter().filter(|c| c.replayed).count();
    let lost = creates.iter().filter(|c| c.lost_201).count();
    assert!(
        creates.iter().all(|c| c.replayed || !c.lost_201),
        "every create whose 201 was lost was answered by a replay"
    );
    let retries: usize = creates.iter().map(|c| c.tries - 1).sum();
    let attempts: Vec<Attempt> = creates.into_iter().map(|c| c.attempt).collect();
    let rows = check_rows(&mut app.db(), &attempts, |a| {
        Expect::Exists(a.created_id().expect("every create ended in a 201"))
    });
    assert_eq!(rows.confirmed, attempts.len());
    eprintln!(
        "terminated {terminated} sessions under {} keyed creates: {ambiguous} had an \
         ambiguous try ({lost} a lost 201), {retries} retries, {replays} answered by a \
         replay; rows {rows:?}",
        attempts.len()
    );
}
