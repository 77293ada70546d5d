//! Health: readiness checks the database; liveness never touches it.

use std::time::SystemTime;

use log::warn;
use serde_json::json;

use super::{Args, Ctx, json};
use crate::clock::rfc3339_micros;
use crate::error::ApiError;
use crate::error_chain::chain;
use crate::http::{RETRY_AFTER_SECS, Request, Response};

/// `/health` and `/health/ready`: 200 when a pooled connection answers, else 503 with the
/// health object itself as the body.
pub fn ready(ctx: &Ctx, _: &Request, _: Args<'_>) -> Result<Response, ApiError> {
    let now = rfc3339_micros(SystemTime::now());
    match ctx.db.ping() {
        Ok(()) => json(
            200,
            &json!({"status": "healthy", "database": "ok", "timestamp": now}),
        ),
        Err(e) => {
            warn!("health check failed: {}", chain(&e));
            let body = json!({"status": "unhealthy", "database": "unavailable", "timestamp": now});
            Ok(json(503, &body)?.with_header("Retry-After", RETRY_AFTER_SECS.to_string()))
        }
    }
}

/// `/health/live`: 200 while the process serves.
pub fn live(_: &Ctx, _: &Request, _: Args<'_>) -> Result<Response, ApiError> {
    let now = rfc3339_micros(SystemTime::now());
    json(200, &json!({"status": "alive", "timestamp": now}))
}
