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

/// Percent-decodes one component.
pub fn decode(s: &str) -> Result<String, Rejection> {
    let bad = || Rejection::BadRequest("the query string has an invalid percent-encoding".into());
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Two hex digits exactly: `from_str_radix` would also take a sign (`%+0`).
            let byte = match bytes.get(i + 1..i + 3) {
                Some(&[hi, lo]) => hex_digit(hi).zip(hex_digit(lo)).map(|(h, l)| h << 4 | l),
                _ => None,
            };
            out.push(byte.ok_or_else(bad)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        Rejection::BadRequest("the query string is not valid UTF-8 once decoded".into())
    })
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
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
