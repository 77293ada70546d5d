//! Routes about the service itself: metrics and the OpenAPI document.

use std::sync::OnceLock;

use super::{Args, Ctx};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::metrics::Metrics;

/// The OpenAPI document, embedded at build time. Its `info.version` is a placeholder: the
/// served document carries the package's version (see `document`).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The document as served: `OPENAPI` with `info.version` set to the version in Cargo.toml,
/// so the binary's `--version`, the image label and the document cannot disagree.
fn document() -> &'static [u8] {
    static DOCUMENT: OnceLock<Vec<u8>> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(OPENAPI) else {
            // Unreachable while the unit tests below pass; serve the file as it is.
            return OPENAPI.as_bytes().to_vec();
        };
        doc["info"]["version"] = env!("CARGO_PKG_VERSION").into();
        serde_json::to_vec_pretty(&doc).unwrap_or_else(|_| OPENAPI.as_bytes().to_vec())
    })
}

pub fn metrics(ctx: &Ctx, _: &Request, _: Args<'_>) -> Result<Response, ApiError> {
    let mut text = ctx.metrics.render(ctx.db.stats(), ctx.db.replica_stats());
    if let Some(store) = &ctx.keys {
        let keys = store.current();
        Metrics::render_key_requests(&mut text, keys.keys().map(|k| (k.name(), k.requests())));
    }
    Ok(Response::new(200)
        .with_header("Content-Type", "text/plain; version=0.0.4")
        .with_body(text.into_bytes()))
}

pub fn openapi(_: &Ctx, _: &Request, _: Args<'_>) -> Result<Response, ApiError> {
    Ok(Response::json_bytes(200, document().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::{OPENAPI, document};
    use crate::router::Path;
    use crate::routes::ROUTES;

    #[test]
    fn the_served_document_carries_the_packages_version() {
        let doc: serde_json::Value = serde_json::from_slice(document()).unwrap();
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let file: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["paths"], file["paths"], "only the version differs");
    }

    #[test]
    fn openapi_documents_exactly_the_routes_and_methods_of_the_route_table() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                let ops = ops.as_object().unwrap().keys();
                ops.filter(|op| *op != "parameters")
                    .map(|op| (path.clone(), op.to_ascii_uppercase()))
                    .collect::<Vec<_>>()
            })
            .collect();
        // The admin console is not part of the API.
        let mut known: Vec<(String, String)> = ROUTES
            .routes()
            .iter()
            .filter_map(|r| match r.path {
                Path::Api(pattern) => Some((pattern.text, r.methods)),
                Path::Admin => None,
            })
            .flat_map(|(pattern, methods)| {
                methods
                    .iter()
                    .map(move |(m, _)| (pattern.to_owned(), m.as_str().to_owned()))
            })
            .collect();
        let mut documented = documented;
        documented.sort_unstable();
        known.sort_unstable();
        assert_eq!(documented, known);
    }
}
