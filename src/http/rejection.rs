//! `Rejection`: why a request's head or body could not be read as a handler needs it.
//!
//! The HTTP layer's own verdict, in HTTP terms; the application turns it into its error
//! response (`ApiError`'s `From<Rejection>`), so this layer knows nothing above it.

use std::fmt;

#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// A malformed header, query string or body: 400, with what was wrong.
    BadRequest(String),
    /// The body was over the limit (and was not kept): 413.
    PayloadTooLarge { limit: usize },
    /// The body was not sent as JSON: 415.
    UnsupportedMediaType,
}

impl Rejection {
    pub fn status(&self) -> u16 {
        match self {
            Rejection::BadRequest(_) => 400,
            Rejection::PayloadTooLarge { .. } => 413,
            Rejection::UnsupportedMediaType => 415,
        }
    }
}

/// What a client may read: one sentence.
impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::BadRequest(msg) => f.write_str(msg),
            Rejection::PayloadTooLarge { limit } => {
                write!(f, "the request body is larger than {limit} bytes")
            }
            Rejection::UnsupportedMediaType => {
                f.write_str("the request body must be sent with Content-Type: application/json")
            }
        }
    }
}

impl std::error::Error for Rejection {}
