//! Dispatch: authentication first, then the route, then one short handler per endpoint.

mod health;
mod meta;
mod users;

use serde::Serialize;

use crate::auth;
use crate::config::Secret;
use crate::db::Db;
use crate::domain::UserId;
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::metrics::Metrics;
use crate::router::{self, Endpoint, Route};

/// What handlers share: the pool, the metrics and the request limits.
pub struct Ctx {
    pub db: Db,
    pub metrics: Metrics,
    pub api_token: Option<Secret>,
    pub max_body_bytes: usize,
    /// The deepest `offset` `GET /users` accepts.
    pub max_list_offset: i64,
}

/// What can be decided from the head alone, before a body is read: authentication,
/// then whether the route exists and takes the method. The connection layer asks this
/// before it reads a body or sends `100 Continue`; `dispatch` asks it first too.
pub fn check_head(ctx: &Ctx, req: &Request, route: Route<'_>) -> Result<(), ApiError> {
    // SECURITY: authentication comes before anything else about the request, so an
    // anonymous client learns nothing (not even whether an id is well formed).
    if let Some(token) = &ctx.api_token {
        if router::is_protected(&req.path) {
            auth::check(req, token)?;
        }
    }
    match route {
        Route::Found { .. } => Ok(()),
        Route::MethodNotAllowed { allow, .. } => Err(ApiError::MethodNotAllowed { allow }),
        Route::NotFound => Err(ApiError::NotFound("route")),
    }
}

/// Answers one request that `route` was already computed for.
pub fn dispatch(ctx: &Ctx, req: &Request, route: Route<'_>) -> Result<Response, ApiError> {
    check_head(ctx, req, route)?;
    let Route::Found { endpoint, id, .. } = route else {
        return Err(ApiError::internal(
            "check_head let an unrouted request through",
        ));
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
    }
}

/// A JSON response of `value`.
fn json<T: Serialize>(status: u16, value: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(value).map_err(ApiError::internal)?;
    Ok(Response::json_bytes(status, body))
}
