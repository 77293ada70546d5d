//! The application as the connection layer sees it: one `Handler` that gives every
//! request an id, runs it behind `catch_unwind`, counts it and writes its access line.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use log::{debug, error, info, warn};

use crate::error::ApiError;
use crate::http::{Handler, Request, Response, request_id};
use crate::router;
use crate::routes::{self, Ctx};

pub struct Service {
    pub ctx: Ctx,
    pub served_by: Option<String>,
}

impl Handler for Service {
    fn handle(&self, req: Request) -> Response {
        let start = Instant::now();
        let rid = request_id::from_header(req.header("x-request-id"));
        let route = router::route(&req.method, &req.path);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            routes::dispatch(&self.ctx, &req, route)
        }));
        let mut resp = match outcome {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                log_error(&e, &rid);
                e.to_response()
            }
            Err(_) => {
                // The panic message itself went to stderr through the panic hook.
                error!("request {rid}: the handler panicked");
                ApiError::internal("handler panicked").to_response()
            }
        };
        resp.headers.push(("X-Request-Id", rid));
        if let Some(s) = &self.served_by {
            resp.headers.push(("X-Served-By", s.clone()));
        }
        let took = start.elapsed();
        self.ctx
            .metrics
            .observe(&req.method, route.pattern(), resp.status, took);
        if log::log_enabled!(log::Level::Info) {
            access_line(&req, &resp, took);
        }
        resp
    }
}

/// Each error is logged once, here, with the request id; the client got only
/// `ApiError`'s `Display`.
fn log_error(e: &ApiError, rid: &str) {
    match e.status() {
        500 => error!("request {rid}: {}", e.chain()),
        503 => warn!("request {rid}: {}", e.chain()),
        _ => debug!("request {rid}: {e}"),
    }
}

/// `client "METHOD path" status bytes duration id=...`: the path is clipped and escaped
/// so a hostile request line cannot forge or flood log lines.
fn access_line(req: &Request, resp: &Response, took: std::time::Duration) {
    let client = req
        .peer
        .map_or_else(|| "-".to_owned(), |p| p.ip().to_string());
    let mut target = req.path.clone();
    if let Some(q) = &req.query {
        target.push('?');
        target.push_str(q);
    }
    let target: String = target
        .chars()
        .take(256)
        .flat_map(char::escape_debug)
        .collect();
    let rid = resp.header("x-request-id").unwrap_or("-");
    info!(
        "{client} \"{} {target}\" {} {} {:.3}ms id={rid}",
        req.method,
        resp.status,
        resp.body.len(),
        took.as_secs_f64() * 1000.0
    );
}
