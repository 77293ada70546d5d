//! user-api: a small, fast user-management HTTP API over PostgreSQL.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod error;
pub mod http;
