//! Failover: with a multi-host `DATABASE_URL` and `target_session_attrs=read-write` (what
//! Patroni, CloudNativePG and managed services hand out), writes resume on a synchronous
//! standby promoted after the primary was stopped hard under constant POSTs; clients see
//! 503s in between but never a 500, and no acknowledged user is missing afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::Replica;
use crate::common::client;
use crate::helpers::*;

const WRITERS: usize = 4;

/// What one writer saw: the ids of the users acknowledged with 201, and every status.
#[derive(Default)]
struct Seen {
    acknowledged: Vec<i64>,
    statuses: Vec<u16>,
}

#[test]
fn writes_resume_on_a_promoted_synchronous_standby_and_no_acknowledged_user_is_lost() {
    let primary = TestCluster::start();
    let replica = Replica::of(&primary);
    {
        // A commit is acknowledged only once the standby has flushed it: what makes
        // "no acknowledged write lost" a promise a failover can keep. The role setting
        // wins over the test cluster's synchronous_commit=off.
        let mut admin = postgres::Client::connect(&primary.superuser_url(), postgres::NoTls)
            .expect("connect to the primary");
        for sql in [
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
            "SELECT pg_reload_conf()",
            "ALTER ROLE CURRENT_USER SET synchronous_commit = on",
        ] {
            admin.simple_query(sql).expect(sql);
        }
    }
    let (primary_port, replica_port) = (primary.port(), replica.port());
    let app = spawn_app_on(&primary, |vars| {
        let url = vars["DATABASE_URL"].replace(
            &format!("127.0.0.1:{primary_port}/"),
            &format!("127.0.0.1:{primary_port},127.0.0.1:{replica_port}/"),
        );
        vars.insert(
            "DATABASE_URL".into(),
            format!("{url}?target_session_attrs=read-write"),
        );
        vars.insert("DB_POOL_TIMEOUT_MS".into(), "500".into());
    });
    let db_name = app.db_name.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (stop, acks, addr) = (Arc::clone(&stop), Arc::clone(&acks), app.addr);
            thread::spawn(move || {
                let mut seen = Seen::default();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let body = format!(r#"{{"first_name": "W{w}", "last_name": "N{n}"}}"#);
                    let Ok(r) = client::send(
                        addr,
                        "POST",
                        "/user",
                        &[("Content-Type", "application/json")],
                        Some(body.as_bytes()),
                    ) else {
                        continue;
                    };
                    seen.statuses.push(r.status);
                    if r.status == 201 {
                        seen.acknowledged
                            .push(r.json()["id"].as_i64().expect("an id"));
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                }
                seen
            })
        })
        .collect();

    let wait_for_acks = |n: usize, what: &str| {
        let reached = poll_until(Duration::from_secs(60), || {
            (acks.load(Ordering::Relaxed) >= n).then_some(())
        });
        assert!(
            reached.is_some(),
            "{what}: {} acknowledged",
            acks.load(Ordering::Relaxed)
        );
    };
    wait_for_acks(200, "before the failover");
    primary.stop_immediate();
    let lost_at = Instant::now();
    let before_promotion = acks.load(Ordering::Relaxed);
    replica.promote();
    wait_for_acks(before_promotion + 200, "after the promotion");
    let resumed_after = lost_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = writers
        .into_iter()
        .map(|w| w.join().expect("a writer panicked"))
        .collect();

    let statuses: Vec<u16> = seen.iter().flat_map(|s| s.statuses.clone()).collect();
    let unexpected: Vec<&u16> = statuses
        .iter()
        .filter(|s| **s != 201 && **s != 503)
        .collect();
    assert!(
        unexpected.is_empty(),
        "statuses besides 201 and 503: {unexpected:?}"
    );

    let mut new_primary = replica.connect(&db_name);
    let stored: std::collections::HashSet<i64> = new_primary
        .query("SELECT id FROM users", &[])
        .expect("read the users on the new primary")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<i64> = seen
        .iter()
        .flat_map(|s| s.acknowledged.iter().copied())
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged users missing after the failover (of {}): {missing:?}",
        missing.len(),
        stored.len()
    );
    eprintln!(
        "failover: {} acknowledged, {} stored, {} answered 503, writes resumed {resumed_after:?} after the primary stopped",
        seen.iter().map(|s| s.acknowledged.len()).sum::<usize>(),
        stored.len(),
        statuses.iter().filter(|s| **s == 503).count()
    );
}
