//! The API test suite: one binary, one module per behaviour.

#[path = "../common/mod.rs"]
mod common;
mod helpers;

mod admin;
mod auth;
mod conditional;
mod db_errors;
mod errors;
mod failover;
mod health;
mod http;
mod idempotency;
mod keys;
mod metrics;
mod openapi;
mod rate_limit;
mod replica;
mod round_trips;
mod seed;
mod statements;
mod users_create;
mod users_delete;
mod users_list;
mod users_read;
mod users_update;
