//! user-api: a small, fast user-management HTTP API over PostgreSQL.
#![deny(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod error_chain;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod rate_limit;
pub mod router;
pub mod routes;
pub mod service;
mod short_copy;
pub mod shutdown;
pub mod startup;
mod sync;
pub mod systemd;
pub mod telemetry;
pub mod tls;

pub use config::Config;
pub use startup::App;
