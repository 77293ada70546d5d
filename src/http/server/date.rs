//! The `Date` header value, cached per thread for the current second.
//!
//! Every response carries it, so formatting it once a second per thread (instead of once
//! per response) keeps it off the hot path without any locking.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::clock;

thread_local! {
    static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Appends the current time as an IMF-fixdate.
pub(crate) fn append_now(out: &mut Vec<u8>) {
    // A clock before 1970 is a broken machine; 1970 is a harmless thing to send then.
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            *cache = (
                secs,
                clock::http_date(UNIX_EPOCH + Duration::from_secs(secs)),
            );
        }
        out.extend_from_slice(cache.1.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_now_writes_an_imf_fixdate() {
        let mut out = Vec::new();
        append_now(&mut out);
        append_now(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.len(), 58, "{text}");
        assert!(
            text.ends_with(" GMT") && text[..29].ends_with(" GMT"),
            "{text}"
        );
    }
}
