//! Hostile clients, round two: what an attack session against the release binary found
//! (an outage through a proxy on oversized bodies, memory per connection, one client
//! taking every slot, deep offsets, and a handful of smaller refusals), each held by a
//! test that failed before the fix.
//!
//! The connection-layer tests run a bare server on `127.0.0.1:0`; the others run the app
//! against the shared throwaway PostgreSQL.

/// The chaos suite's server-as-a-child-process, for the memory figure.
#[allow(dead_code, unused_imports)]
#[path = "../chaos/support.rs"]
mod chaos_support;
#[path = "../common/mod.rs"]
mod common;
#[path = "../support/mod.rs"]
mod support;

mod conformance;
mod connection_slots;
mod deep_offset;
mod head_checks;
mod memory;
mod oversized_body;
mod refusals;
