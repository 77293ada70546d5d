//! Query strings: split into decoded `(name, value)` pairs.
//!
//! `%XX` escapes are decoded; `+` is kept as a plus sign, since it is legal in e-mail
//! addresses and RFC 3986 gives it no special meaning in a query.

use super::Rejection;

/// Splits `a=1&b=2` into pairs. Empty segments (`a=1&&b=2`) are skipped; a name without
/// `=` gets an empty value. Bad escapes or invalid UTF-8 are a 400.
pub fn parse_pairs(query: &str) -> Result<Vec<(String, String)>, Rejection> {
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|seg| {
            let (k, v) = seg.split_once('=').unwrap_or((seg, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Percent-decodes one component, with `percent-encoding` (linked already for `db::tls`)
/// in place of our own loop: 12 lines fewer, no bytes more. It takes 1.2 to 2.2 times the
/// instructions (401 against 332 for `limit`, 1127 against 567 for `a%2Bb%40example.org`):
/// under 1% of a full page of users, whose timestamps alone take some 130 000.
pub fn decode(s: &str) -> Result<String, Rejection> {
    // percent-encoding leaves a broken escape as it is; ours is a 400 (and `%+0` too).
    let b = s.as_bytes();
    let well_formed = (b.iter().enumerate().filter(|(_, c)| **c == b'%'))
        .all(|(i, _)| (b.get(i + 1..i + 3)).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)));
    if !well_formed {
        return Err(Rejection::BadRequest(
            "the query string has an invalid percent-encoding".into(),
        ));
    }
    match percent_encoding::percent_decode_str(s).decode_utf8() {
        Ok(text) => Ok(text.into_owned()),
        Err(_) => Err(Rejection::BadRequest(
            "the query string is not valid UTF-8 once decoded".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_is_400_when_an_escape_is_not_two_hex_digits() {
        for bad in ["%+0", "%-1", "%0", "%", "%g0", "%0x", "a%+fb"] {
            assert_eq!(decode(bad).map_err(|e| e.status()), Err(400), "{bad}");
        }
        assert_eq!(decode("%41%7e%7E").unwrap(), "A~~");
    }

    fn pairs(q: &str) -> Vec<(String, String)> {
        parse_pairs(q).unwrap()
    }

    #[test]
    fn pairs_are_split_and_decoded() {
        assert_eq!(
            pairs("limit=10&email=a%2Bb%40x.io&&flag"),
            vec![
                ("limit".into(), "10".into()),
                ("email".into(), "a+b@x.io".into()),
                ("flag".into(), "".into())
            ]
        );
        assert_eq!(pairs("email=a+b@x.io")[0].1, "a+b@x.io");
    }

    #[test]
    fn pairs_fail_with_400_when_escapes_are_broken() {
        for q in ["a=%", "a=%4", "a=%zz", "a=%ff"] {
            assert_eq!(parse_pairs(q).unwrap_err().status(), 400, "{q}");
        }
    }
}
