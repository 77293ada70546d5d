//! The application's endpoints: the route table ([`ROUTES`], in `table.rs`), whose
//! methods name their handlers, one short handler per endpoint, and [`dispatch`], which
//! runs the one the table names. Authorisation has already happened (see
//! [`crate::service`] and [`crate::auth`]).
//!
//! Adding an endpoint: a row (or a method on a row) in `table.rs` naming its handler,
//! the handler (a [`Handler`]) in a module here, its test, and the contract
//! (docs/API.md, src/openapi.json, which a unit test holds to the table).

pub mod admin;
mod health;
mod idempotent;
mod meta;
mod table;
mod users;

pub use table::ROUTES;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::db::Db;
use crate::db::idempotency::Purger;
use crate::domain::UserId;
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::router::{self, AdminAsset, Outcome};
use crate::short_copy;

/// What handlers share: the pool, the metrics, the API keys and the request limits.
pub struct Ctx {
    pub db: Db,
    pub metrics: Metrics,
    /// The API keys in force; `None`: the user routes are open.
    pub keys: Option<Arc<KeyStore>>,
    pub max_body_bytes: usize,
    /// The deepest `offset` `GET /users` accepts.
    pub max_list_offset: i64,
    /// PUT, PATCH and DELETE of a user need `If-Match`.
    pub require_if_match: bool,
    /// How long an `Idempotency-Key`'s answer is replayed.
    pub idempotency_key_ttl: Duration,
    /// The purge of expired idempotency keys, which stops with the service.
    pub purger: Option<Purger>,
}

/// What every handler is: one signature, so that the route table can name handlers
/// directly and nothing between the table and a handler needs to know one.
pub type Handler = fn(&Ctx, &Request, Args<'_>) -> Result<Response, ApiError>;

/// A request's route as the service's table found it.
pub type Routed = router::Routed<Handler>;

/// What routing and authorisation learnt about a request beyond the request itself.
#[derive(Clone, Copy, Debug)]
pub struct Args<'a> {
    /// The part of the path the route captures, raw: the `{id}` segment, or the admin
    /// console's file after its path; empty for a route without a capture.
    pub capture: &'a str,
    /// The name of the API key the request was made with, when there is one: whose
    /// `Idempotency-Key`s a write's key is kept among.
    pub caller: Option<&'a str>,
}

impl Args<'_> {
    /// The `{id}` the route captured, parsed: a handler that takes one asks first.
    pub fn user_id(&self) -> Result<UserId, ApiError> {
        UserId::parse(self.capture)
    }
}

/// What can be decided about the route from the head alone, before a body is read:
/// whether it exists and takes the method. The connection layer asks this (after the
/// service's authorisation) before it reads a body or sends `100 Continue`; `dispatch`
/// asks it first too.
pub fn check_head(route: Routed) -> Result<Handler, ApiError> {
    match route.outcome() {
        Outcome::Found(handler) => Ok(handler),
        Outcome::MethodNotAllowed { allow } => Err(ApiError::MethodNotAllowed { allow }),
        Outcome::NotFound => Err(ApiError::NotFound("route")),
    }
}

/// Answers one request that `route` was already computed for, once authorised: runs
/// the handler the table names for it. `caller` is the name of the API key the request
/// was made with, when there is one.
pub fn dispatch(
    ctx: &Ctx,
    req: &Request,
    route: Routed,
    caller: Option<&str>,
) -> Result<Response, ApiError> {
    let handler = check_head(route)?;
    let capture = route.capture(&req.path);
    handler(ctx, req, Args { capture, caller })
}

/// The admin console's files: which one is the route's capture. (Adapted here so that
/// `admin` keeps to serving files and needs nothing of this module.)
fn admin_file(_: &Ctx, req: &Request, args: Args<'_>) -> Result<Response, ApiError> {
    match AdminAsset::parse(args.capture) {
        Some(asset) => admin::serve(req, asset),
        None => Err(ApiError::NotFound("route")),
    }
}

/// A JSON response of `value`. A user is about 200 bytes: one allocation holds it.
fn json<T: Serialize>(status: u16, value: &T) -> Result<Response, ApiError> {
    json_sized(status, value, 256)
}

/// A JSON response of `value`, written into a buffer of `capacity` bytes: a list page
/// that grew from serde_json's 128 bytes reallocated (and copied) nine times.
fn json_sized<T: Serialize>(status: u16, value: &T, capacity: usize) -> Result<Response, ApiError> {
    let mut body = Vec::with_capacity(capacity);
    // Each key and string value is a short piece: see `short_copy`.
    serde_json::to_writer(short_copy::Writer(&mut body), value).map_err(ApiError::internal)?;
    Ok(Response::json_bytes(status, body))
}
