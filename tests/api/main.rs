//! The API test suite: one binary, one module per behaviour.

#[path = "../common/mod.rs"]
mod common;
mod helpers;

mod auth;
mod db_errors;
mod errors;
mod health;
mod http;
mod metrics;
mod openapi;
mod rate_limit;
mod replica;
mod seed;
mod users_create;
mod users_delete;
mod users_list;
mod users_read;
mod users_update;
