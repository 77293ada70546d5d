//! Routes about the service itself: metrics and the OpenAPI document.

use super::Ctx;
use crate::error::ApiError;
use crate::http::Response;

/// The OpenAPI document, embedded at build time.
pub const OPENAPI: &str = include_str!("../openapi.json");

pub fn metrics(ctx: &Ctx) -> Result<Response, ApiError> {
    let text = ctx.metrics.render(ctx.db.stats());
    Ok(Response::new(200)
        .with_header("Content-Type", "text/plain; version=0.0.4")
        .with_body(text.into_bytes()))
}

pub fn openapi() -> Result<Response, ApiError> {
    Ok(Response::json_bytes(200, OPENAPI.as_bytes().to_vec()))
}
