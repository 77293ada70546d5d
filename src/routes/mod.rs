//! Dispatch: the route, then one short handler per endpoint. Authorisation has already
//! happened (see [`crate::service`] and [`crate::auth`]).

pub mod admin;
mod health;
mod idempotent;
mod meta;
mod users;

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
use crate::router::{AdminAsset, Endpoint, Outcome, Routed};

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

/// What can be decided about the route from the head alone, before a body is read:
/// whether it exists and takes the method. The connection layer asks this (after the
/// service's authorisation) before it reads a body or sends `100 Continue`; `dispatch`
/// asks it first too.
pub fn check_head(route: Routed) -> Result<Endpoint, ApiError> {
    match route.outcome() {
        Outcome::Found(endpoint) => Ok(endpoint),
        Outcome::MethodNotAllowed { allow } => Err(ApiError::MethodNotAllowed { allow }),
        Outcome::NotFound => Err(ApiError::NotFound("route")),
    }
}

/// Answers one request that `route` was already computed for, once authorised.
/// `caller` is the name of the API key the request was made with, when there is one:
/// whose `Idempotency-Key`s a write's key is kept among.
pub fn dispatch(
    ctx: &Ctx,
    req: &Request,
    route: Routed,
    caller: Option<&str>,
) -> Result<Response, ApiError> {
    let endpoint = check_head(route)?;
    let id = || UserId::parse(route.capture(&req.path));
    match endpoint {
        Endpoint::CreateUser => users::create(ctx, req, caller),
        Endpoint::ListUsers => users::list(ctx, req),
        Endpoint::GetUser => users::get(ctx, req, id()?),
        Endpoint::ReplaceUser => users::replace(ctx, req, caller, id()?),
        Endpoint::PatchUser => users::patch(ctx, req, caller, id()?),
        Endpoint::DeleteUser => users::delete(ctx, req, caller, id()?),
        Endpoint::Health => health::ready(ctx),
        Endpoint::Live => health::live(),
        Endpoint::Metrics => meta::metrics(ctx),
        Endpoint::OpenApi => meta::openapi(),
        Endpoint::Admin => match AdminAsset::parse(route.capture(&req.path)) {
            Some(asset) => admin::serve(req, asset),
            None => Err(ApiError::NotFound("route")),
        },
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
    serde_json::to_writer(&mut body, value).map_err(ApiError::internal)?;
    Ok(Response::json_bytes(status, body))
}
