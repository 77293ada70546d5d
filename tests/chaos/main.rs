//! The chaos suite: the real app and the real binary against a real PostgreSQL, under
//! faults (the database stopped or crashed mid-load, an exhausted pool, SIGTERM under
//! load) and under attack (idle and slowloris connections, a connection flood, hostile
//! inputs, one address flooding, token guessing). Every test asserts exact statuses and,
//! after each storm, that the table holds exactly the rows the clients were told about.
//!
//! The tests run one at a time (see `support::serial`). The soak is `#[ignore]`d and run
//! on its own, on the release build: `tests/chaos/run`.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod auth;
mod connection_flood;
mod db_outage;
mod hostile_inputs;
mod idempotent_retries;
mod pool_exhaustion;
mod rate_limit;
mod sigterm;
mod slow_clients;
mod soak;
