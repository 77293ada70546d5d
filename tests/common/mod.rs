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
