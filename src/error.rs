//! `ApiError`: every way a request can fail, each mapped to exactly one HTTP status and
//! API.md's JSON error body.

use std::error::Error as StdError;
use std::fmt;

use crate::db::{DbError, Kind, users};
use crate::error_chain::chain;
use crate::http::{RETRY_AFTER_SECS, Rejection, Response};

#[derive(Debug)]
pub enum ApiError {
    /// A field failed validation: 400 with `"field"`.
    Validation {
        field: &'static str,
        msg: String,
    },
    /// Anything else wrong with the request itself: 400.
    BadRequest(String),
    Unauthorized,
    /// A known API key without the scope the request needs (`read` or `write`): 403.
    Forbidden(&'static str),
    NotFound(&'static str),
    MethodNotAllowed {
        allow: &'static str,
    },
    Conflict(&'static str),
    /// A request with this `Idempotency-Key` is still running: 409, retry later.
    IdempotencyKeyInFlight,
    /// `If-Match` named no current version of the resource: 412.
    PreconditionFailed,
    PayloadTooLarge {
        limit: usize,
    },
    UnsupportedMediaType,
    /// The `Idempotency-Key` was first used for a different request: 422.
    IdempotencyKeyReused,
    /// `REQUIRE_IF_MATCH` is on and the write came without `If-Match`: 428.
    PreconditionRequired,
    RateLimited {
        retry_after_secs: u64,
    },
    /// The database can't be reached or no pooled connection freed up in time.
    Unavailable(Box<dyn StdError + Send + Sync>),
    /// Anything else; the source is logged, never shown.
    Internal(Box<dyn StdError + Send + Sync>),
}

impl ApiError {
    pub fn validation(field: &'static str, msg: impl Into<String>) -> ApiError {
        ApiError::Validation {
            field,
            msg: msg.into(),
        }
    }

    pub fn internal(e: impl Into<Box<dyn StdError + Send + Sync>>) -> ApiError {
        ApiError::Internal(e.into())
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::Validation { .. } | ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Conflict(_) | ApiError::IdempotencyKeyInFlight => 409,
            ApiError::PreconditionFailed => 412,
            ApiError::PayloadTooLarge { .. } => 413,
            ApiError::UnsupportedMediaType => 415,
            ApiError::IdempotencyKeyReused => 422,
            ApiError::PreconditionRequired => 428,
            ApiError::RateLimited { .. } => 429,
            ApiError::Unavailable(_) => 503,
            ApiError::Internal(_) => 500,
        }
    }

    /// The response a client sees: the status, `{"error": ...}` and the headers the
    /// contract asks for. Nothing internal leaks into it.
    pub fn to_response(&self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.to_string().into());
        if let ApiError::Validation { field, .. } = self {
            body.insert("field".into(), (*field).into());
        }
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let resp = Response::json_bytes(self.status(), bytes);
        match self {
            ApiError::Unauthorized => resp.with_header("WWW-Authenticate", "Bearer"),
            ApiError::MethodNotAllowed { allow } => resp.with_header("Allow", *allow),
            ApiError::RateLimited { retry_after_secs } => {
                resp.with_header("Retry-After", retry_after_secs.to_string())
            }
            ApiError::Unavailable(_) | ApiError::IdempotencyKeyInFlight => {
                resp.with_header("Retry-After", RETRY_AFTER_SECS.to_string())
            }
            _ => resp,
        }
    }

    /// The error and its whole source chain, for the log line.
    pub fn chain(&self) -> String {
        chain(self)
    }
}

/// What a client may read: one sentence, no internals.
impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Validation { msg, .. } | ApiError::BadRequest(msg) => f.write_str(msg),
            ApiError::Unauthorized => f.write_str("a valid bearer token is required"),
            ApiError::Forbidden(scope) => {
                write!(f, "this API key lacks the {scope} scope this request needs")
            }
            ApiError::NotFound(what) => write!(f, "{what} not found"),
            ApiError::MethodNotAllowed { .. } => f.write_str("method not allowed for this path"),
            ApiError::Conflict(msg) => f.write_str(msg),
            ApiError::IdempotencyKeyInFlight => f.write_str(
                "a request with this Idempotency-Key is still being processed; retry later",
            ),
            ApiError::PreconditionFailed => {
                f.write_str("If-Match matches no current version of this user")
            }
            ApiError::IdempotencyKeyReused => {
                f.write_str("this Idempotency-Key was already used for a different request")
            }
            ApiError::PreconditionRequired => {
                f.write_str("this write needs an If-Match header with the user's ETag")
            }
            ApiError::PayloadTooLarge { limit } => {
                write!(f, "the request body is larger than {limit} bytes")
            }
            ApiError::UnsupportedMediaType => {
                f.write_str("the request body must be sent with Content-Type: application/json")
            }
            ApiError::RateLimited { .. } => f.write_str("too many requests; slow down"),
            ApiError::Unavailable(_) => f.write_str("the database is unavailable; try again"),
            ApiError::Internal(_) => f.write_str("internal server error"),
        }
    }
}

impl StdError for ApiError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            ApiError::Unavailable(e) | ApiError::Internal(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// The HTTP layer's refusals of a request's head or body, as the same statuses.
impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> ApiError {
        match r {
            Rejection::BadRequest(msg) => ApiError::BadRequest(msg),
            Rejection::PayloadTooLarge { limit } => ApiError::PayloadTooLarge { limit },
            Rejection::UnsupportedMediaType => ApiError::UnsupportedMediaType,
        }
    }
}

/// The one conversion from the database's errors: a passing failure is a 503 the client
/// may retry, a clash on the email index is the client's 409, anything else is ours.
impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        match e.kind() {
            Kind::Unavailable => ApiError::Unavailable(Box::new(e)),
            Kind::Conflict(users::EMAIL_INDEX) => {
                ApiError::Conflict("that email belongs to another user")
            }
            // Only the email index makes a clash the client caused; any other unique
            // violation (a primary key after a careless restore, say) is our fault.
            Kind::Conflict(_) | Kind::Other => ApiError::Internal(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(e: &ApiError) -> serde_json::Value {
        serde_json::from_slice(&e.to_response().body).unwrap()
    }

    #[test]
    fn validation_error_names_its_field() {
        let e = ApiError::validation("email", "email must contain one @");
        assert_eq!(e.status(), 400);
        assert_eq!(
            body(&e),
            serde_json::json!({"error": "email must contain one @", "field": "email"})
        );
    }

    #[test]
    fn internal_error_hides_its_source_from_the_client() {
        let e = ApiError::internal("relation \"users\" does not exist");
        assert_eq!(e.status(), 500);
        assert_eq!(
            body(&e),
            serde_json::json!({"error": "internal server error"})
        );
        assert!(e.chain().contains("relation"));
    }

    #[test]
    fn unavailable_carries_retry_after() {
        let e = ApiError::Unavailable("gone".into());
        let r = e.to_response();
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
    }

    #[test]
    fn a_rejection_keeps_its_status_and_message_as_an_api_error() {
        for r in [
            Rejection::BadRequest("the query string is bad".into()),
            Rejection::PayloadTooLarge { limit: 10 },
            Rejection::UnsupportedMediaType,
        ] {
            let (status, message) = (r.status(), r.to_string());
            let e = ApiError::from(r);
            assert_eq!((e.status(), e.to_string()), (status, message));
        }
    }

    #[test]
    fn forbidden_is_a_403_naming_the_missing_scope_without_a_challenge() {
        let e = ApiError::Forbidden("write");
        let r = e.to_response();
        assert_eq!(r.status, 403);
        assert_eq!(r.header("WWW-Authenticate"), None);
        assert_eq!(
            body(&e),
            serde_json::json!({"error": "this API key lacks the write scope this request needs"})
        );
    }

    #[test]
    fn unauthorized_and_method_not_allowed_carry_their_headers() {
        let r = ApiError::Unauthorized.to_response();
        assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
        assert_eq!(
            body(&ApiError::Unauthorized),
            serde_json::json!({"error": "a valid bearer token is required"})
        );
        let r = ApiError::MethodNotAllowed { allow: "GET, HEAD" }.to_response();
        assert_eq!((r.status, r.header("Allow")), (405, Some("GET, HEAD")));
    }
}
