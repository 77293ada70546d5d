//! Request ids: keep a client's own when it is sane, else make a fresh one.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::Request;

/// A client's id is kept when it is 1 to 64 of `[A-Za-z0-9._-]`: safe to echo in a
/// header and to write in a log line.
pub fn is_sane(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The client's id from `X-Request-Id` if it is sane, else a fresh one.
pub fn from_header(value: Option<&str>) -> String {
    match value {
        Some(v) if is_sane(v) => v.to_owned(),
        _ => fresh(),
    }
}

/// Gives `req` a sane `X-Request-Id`: the client's own when it is sane, else a fresh one
/// in its place. Returns the id.
///
/// The connection layer does this before the handler runs, so that the handler's access
/// line and the layer's own 500 (should the handler panic) name the same id.
pub fn assign(req: &mut Request) -> String {
    let sent = req
        .headers
        .iter_mut()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-request-id"));
    match sent {
        Some((_, value)) if is_sane(value) => value.clone(),
        Some((_, value)) => {
            *value = fresh();
            value.clone()
        }
        None => {
            let id = fresh();
            req.headers.push(("x-request-id".to_owned(), id.clone()));
            id
        }
    }
}

/// A fresh id: 16 hex digits, unique within the process and unlikely to repeat across
/// processes. Not a secret: a counter mixed with a per-process seed.
pub fn fresh() -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        splitmix64(nanos ^ (u64::from(std::process::id()) << 32))
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let v = splitmix64(seed.wrapping_add(n));
    (0..16)
        .rev()
        .map(|i| char::from(b"0123456789abcdef"[(v >> (i * 4)) as usize & 0xf]))
        .collect()
}

/// A bijective mixer, so distinct counters give distinct ids.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;

    #[test]
    fn client_id_is_kept_when_sane() {
        assert_eq!(from_header(Some("abc-1.2_Z")), "abc-1.2_Z");
    }

    #[test]
    fn client_id_is_replaced_when_unsafe_or_too_long() {
        for bad in ["", "a b", "x\r\ny", "é", &"a".repeat(65)] {
            let id = from_header(Some(bad));
            assert_ne!(id, bad);
            assert!(is_sane(&id));
        }
    }

    #[test]
    fn fresh_ids_are_16_lowercase_hex_digits() {
        let id = fresh();
        assert_eq!(id.len(), 16);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{id}"
        );
    }

    #[test]
    fn assigned_id_is_the_clients_own_when_sane_and_a_fresh_one_in_its_place_otherwise() {
        let mut kept = Request::new(Method::Get, "/").with_header("X-Request-Id", "abc.1");
        assert_eq!(assign(&mut kept), "abc.1");
        assert_eq!(kept.headers.len(), 1);

        let mut replaced = Request::new(Method::Get, "/").with_header("X-Request-Id", "a b");
        let id = assign(&mut replaced);
        assert!(is_sane(&id) && id != "a b");
        assert_eq!(replaced.header("x-request-id"), Some(id.as_str()));
        assert_eq!(replaced.headers.len(), 1, "replaced, not added");

        let mut missing = Request::new(Method::Get, "/").with_header("Host", "t");
        let id = assign(&mut missing);
        assert!(is_sane(&id));
        assert_eq!(missing.header("x-request-id"), Some(id.as_str()));
        assert_eq!(
            missing.headers[0].0, "host",
            "added after what the client sent"
        );
        assert_eq!(
            from_header(missing.header("x-request-id")),
            id,
            "read back the same"
        );
    }

    #[test]
    fn fresh_ids_do_not_repeat() {
        let ids: std::collections::HashSet<_> = (0..10_000).map(|_| fresh()).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
