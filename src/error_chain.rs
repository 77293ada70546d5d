//! An error and its sources on one line, for logs. The ground floor: every layer logs
//! errors this way, so it depends on none of them.

use std::error::Error as StdError;

/// An error and its sources, `outer: inner: innermost`, for logs: the driver's
/// `Display` alone is often just "db error", with the server's message in the source.
pub fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(inner) = next {
        let text = inner.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = inner.source();
    }
    out
}
