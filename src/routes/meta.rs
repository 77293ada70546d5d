//! Routes about the service itself: metrics and the OpenAPI document.

use std::sync::OnceLock;

use super::Ctx;
use crate::error::ApiError;
use crate::http::Response;
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

pub fn metrics(ctx: &Ctx) -> Result<Response, ApiError> {
    let mut text = ctx.metrics.render(ctx.db.stats(), ctx.db.replica_stats());
    if let Some(store) = &ctx.keys {
        let keys = store.current();
        Metrics::render_key_requests(&mut text, keys.keys().map(|k| (k.name(), k.requests())));
    }
    Ok(Response::new(200)
        .with_header("Content-Type", "text/plain; version=0.0.4")
        .with_body(text.into_bytes()))
}

pub fn openapi() -> Result<Response, ApiError> {
    Ok(Response::json_bytes(200, document().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::{OPENAPI, document};
    use crate::http::Method;
    use crate::router::{PATTERNS, Route, UNMATCHED, route};

    const METHODS: [Method; 6] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
    ];

    /// A concrete path for a pattern, to ask the router about it.
    fn sample(pattern: &str) -> String {
        pattern.replace("{id}", "1")
    }

    #[test]
    fn the_served_document_carries_the_packages_version() {
        let doc: serde_json::Value = serde_json::from_slice(document()).unwrap();
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let file: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["paths"], file["paths"], "only the version differs");
    }

    #[test]
    fn openapi_documents_exactly_the_routes_the_router_knows() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
        let mut known: Vec<&str> = PATTERNS[..UNMATCHED].to_vec();
        documented.sort_unstable();
        known.sort_unstable();
        assert_eq!(documented, known);
        for pattern in known {
            for m in &METHODS {
                let routed = matches!(route(m, &sample(pattern)), Route::Found { .. });
                let op = m.as_str().to_ascii_lowercase();
                let in_doc = paths[pattern].get(&op).is_some();
                assert_eq!(
                    routed, in_doc,
                    "{} {pattern}: router {routed}, document {in_doc}",
                    m
                );
            }
        }
    }
}
