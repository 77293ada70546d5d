//! Test support shared by the test binaries: a throwaway PostgreSQL, a small blocking
//! HTTP/1.1 client, the in-process app and temporary directories.
//!
//! Each test binary compiles this module on its own and uses a different part of it;
//! `examples/pg.rs` compiles it too, to give scripts the same PostgreSQL launcher.
#![allow(dead_code, unused_imports)]

pub mod app;
pub mod client;
pub mod pg;
pub mod tempdir;

pub use app::{TestApp, spawn_app, spawn_app_in, spawn_app_on, spawn_app_with};
pub use client::{HttpConnection, HttpResponse};
pub use pg::{DataDir, Replica, TestCluster, TestDatabase, fresh_database};
pub use tempdir::TempDir;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// 64 random bits from the standard library's per-instance hash keys: enough for unique
/// names and passwords in tests, with no extra crate.
pub fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port that was free a moment ago on 127.0.0.1. Whoever uses it must cope with losing
/// the race to another process (retry with a new one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// Waits until the server at `addr` reports at least `n` idle pool connections in
/// `/metrics` (the pool fills in the background), so that a test's requests do not wait
/// for new ones.
pub fn wait_for_idle_connections(addr: std::net::SocketAddr, n: f64) {
    let warm = poll_until(Duration::from_secs(30), || {
        let text = client::send(addr, "GET", "/metrics", &[], None)
            .ok()?
            .text();
        let idle: f64 = text
            .lines()
            .find(|l| l.starts_with("db_pool_connections{state=\"idle\"}"))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()?;
        (idle >= n).then_some(())
    });
    assert!(warm.is_some(), "the pool never had {n} idle connections");
}

/// Takes `LOCK TABLE users IN {mode} MODE` in a transaction on `db`: requests that touch
/// `users` wait until the returned transaction ends.
pub fn lock_users<'a>(db: &'a mut postgres::Client, mode: &str) -> postgres::Transaction<'a> {
    let mut lock = db.transaction().expect("begin the locking transaction");
    lock.batch_execute(&format!("LOCK TABLE users IN {mode} MODE"))
        .expect("lock the users table");
    lock
}

/// `GET target` on a connection of its own, sent from a thread of its own: for a request
/// that will wait (behind a test's lock) while the test goes on.
pub fn get_in_background(
    addr: std::net::SocketAddr,
    target: String,
) -> std::thread::JoinHandle<std::io::Result<HttpResponse>> {
    std::thread::spawn(move || client::send(addr, "GET", &target, &[], None))
}
