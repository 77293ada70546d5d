//! Dispatch: the route, then one short handler per endpoint. Authorisation has already
//! happened (see [`crate::service`] and [`crate::auth`]).

pub mod admin;
mod health;
mod meta;
mod users;

use std::sync::Arc;

use serde::Serialize;

use crate::db::Db;
use crate::domain::UserId;
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::router::{Endpoint, Route};

/// What handlers share: the pool, the metrics, the API keys and the request limits.
pub struct Ctx {
    pub db: Db,
    pub metrics: Metrics,
    /// The API keys in force; `None`: the user routes are open.
    pub keys: Option<Arc<KeyStore>>,
    pub max_body_bytes: usize,
}

/// Answers one request that `route` was already computed for.
pub fn dispatch(ctx: &Ctx, req: &Request, route: Route<'_>) -> Result<Response, ApiError> {
    let (endpoint, id) = match route {
        Route::Found { endpoint, id, .. } => (endpoint, id),
        Route::MethodNotAllowed { allow, .. } => return Err(ApiError::MethodNotAllowed { allow }),
        Route::NotFound => return Err(ApiError::NotFound("route")),
    };
    let id = || UserId::parse(id.unwrap_or(""));
    match endpoint {
        Endpoint::CreateUser => users::create(ctx, req),
        Endpoint::ListUsers => users::list(ctx, req),
        Endpoint::GetUser => users::get(ctx, id()?),
        Endpoint::ReplaceUser => users::replace(ctx, req, id()?),
        Endpoint::PatchUser => users::patch(ctx, req, id()?),
        Endpoint::DeleteUser => users::delete(ctx, id()?),
        Endpoint::Health => health::ready(ctx),
        Endpoint::Live => health::live(),
        Endpoint::Metrics => meta::metrics(ctx),
        Endpoint::OpenApi => meta::openapi(),
        Endpoint::Admin(asset) => admin::serve(req, asset),
    }
}

/// A JSON response of `value`.
fn json<T: Serialize>(status: u16, value: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value).map_err(ApiError::internal)?;
    Ok(Response::json_bytes(status, body))
}
