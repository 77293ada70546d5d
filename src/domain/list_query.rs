//! `ListQuery`: the query of `GET /users`, checked against API.md's rules.

use super::{Email, UserId};
use crate::error::ApiError;
use crate::http::query;

pub const DEFAULT_LIMIT: i64 = 10;
pub const MAX_LIMIT: i64 = 100;
/// The default deepest `offset` (`MAX_LIST_OFFSET`): the database still reads and throws
/// away every skipped row, so an unbounded offset is a cheap way to tie up the pool.
pub const DEFAULT_MAX_OFFSET: i64 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: i64,
    pub offset: i64,
    pub after_id: Option<UserId>,
    pub email: Option<Email>,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            limit: DEFAULT_LIMIT,
            offset: 0,
            after_id: None,
            email: None,
        }
    }
}

impl ListQuery {
    /// Parses a raw query string; every unknown, repeated or out-of-range parameter is a
    /// 400 that names it. `offset` may be at most `max_offset`: deeper pages are for
    /// `after_id`, which costs the same on any page.
    pub fn parse(raw: Option<&str>, max_offset: i64) -> Result<ListQuery, ApiError> {
        let mut q = ListQuery::default();
        let mut seen: Vec<&'static str> = Vec::new();
        for (name, value) in query::parse_pairs(raw.unwrap_or(""))? {
            let key: &'static str = match name.as_str() {
                "limit" => "limit",
                "offset" => "offset",
                "after_id" => "after_id",
                "email" => "email",
                _ => {
                    let shown: String = name.chars().take(64).collect();
                    return Err(ApiError::BadRequest(format!(
                        "unknown query parameter {shown:?}; expected limit, offset, after_id or email"
                    )));
                }
            };
            if seen.contains(&key) {
                return Err(ApiError::validation(
                    key,
                    format!("{key} is given more than once"),
                ));
            }
            seen.push(key);
            match key {
                "limit" => q.limit = number(key, &value, 1, MAX_LIMIT)?,
                "offset" => q.offset = offset(&value, max_offset)?,
                "after_id" => q.after_id = Some(UserId::parse_named(&value, "after_id")?),
                _ => q.email = Some(Email::parse(&value)?),
            }
        }
        if q.after_id.is_some() && q.offset != 0 {
            return Err(ApiError::validation(
                "offset",
                "after_id cannot be combined with a non-zero offset",
            ));
        }
        Ok(q)
    }
}

/// SECURITY: a deep offset makes the database read and discard every row before it, so
/// it is capped; the message points to `after_id`, the cheap way to go deep.
fn offset(value: &str, max_offset: i64) -> Result<i64, ApiError> {
    let n = number("offset", value, 0, i64::MAX)?;
    if n > max_offset {
        return Err(ApiError::validation(
            "offset",
            format!(
                "offset must be at most {max_offset}; for deeper pages use after_id \
                 (the next_after_id of the page before)"
            ),
        ));
    }
    Ok(n)
}

fn number(key: &'static str, value: &str, min: i64, max: i64) -> Result<i64, ApiError> {
    let fail =
        || ApiError::validation(key, format!("{key} must be an integer from {min} to {max}"));
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail());
    }
    match value.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(fail()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<ListQuery, ApiError> {
        ListQuery::parse(Some(q), DEFAULT_MAX_OFFSET)
    }

    #[test]
    fn list_query_has_defaults_when_empty() {
        assert_eq!(
            ListQuery::parse(None, DEFAULT_MAX_OFFSET).unwrap(),
            ListQuery::default()
        );
        assert_eq!(parse("").unwrap(), ListQuery::default());
    }

    #[test]
    fn list_query_reads_every_parameter() {
        let q = parse("limit=100&after_id=42&email=Ada%40Example.com").unwrap();
        assert_eq!(q.limit, 100);
        assert_eq!(q.after_id.map(UserId::get), Some(42));
        assert_eq!(q.email.unwrap().as_ref(), "Ada@Example.com");
        assert_eq!(parse("offset=5&limit=1").unwrap().offset, 5);
        assert_eq!(parse("after_id=3&offset=0").unwrap().offset, 0);
    }

    #[test]
    fn list_query_is_400_when_a_parameter_is_bad() {
        for bad in [
            "limit=0",
            "limit=101",
            "limit=abc",
            "limit=",
            "limit=-1",
            "offset=-1",
            "offset=x",
            "after_id=0",
            "after_id=5&offset=1",
            "page=2",
            "limit=1&limit=2",
            "email=nope",
            "offset=9223372036854775808",
            "limit",
            // Decimal digits only (API.md): a sign is a 400 even before an in-range number.
            "limit=+5",
            "offset=+0",
            "after_id=+1",
        ] {
            assert_eq!(parse(bad).unwrap_err().status(), 400, "{bad}");
        }
    }

    #[test]
    fn list_query_is_400_pointing_to_after_id_when_offset_passes_the_maximum() {
        assert_eq!(parse("offset=10000").unwrap().offset, 10_000);
        for deep in ["offset=10001", "offset=999999999"] {
            let e = parse(deep).unwrap_err();
            assert_eq!(e.status(), 400, "{deep}");
            assert!(e.to_string().contains("after_id"), "{deep}: {e}");
        }
        assert_eq!(
            ListQuery::parse(Some("offset=51"), 50)
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(ListQuery::parse(Some("offset=50"), 50).unwrap().offset, 50);
    }
}
