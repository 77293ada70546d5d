//! `UserId`: a user's id from a path or query, 1 to 2^63-1.

use std::fmt;

use crate::error::ApiError;

const RANGE: &str = "must be an integer from 1 to 9223372036854775807";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct UserId(i64);

impl UserId {
    /// Parses the `{id}` of a path: ASCII digits only, no sign, no spaces, nothing
    /// outside 1..=i64::MAX. A path is not a body field, so the 400 names no field.
    pub fn parse(raw: &str) -> Result<UserId, ApiError> {
        UserId::digits(raw)
            .ok_or_else(|| ApiError::BadRequest(format!("the user id in the path {RANGE}")))
    }

    /// As [`UserId::parse`], for the query parameter or field `what`.
    pub fn parse_named(raw: &str, what: &'static str) -> Result<UserId, ApiError> {
        UserId::digits(raw).ok_or_else(|| ApiError::validation(what, format!("{what} {RANGE}")))
    }

    fn digits(raw: &str) -> Option<UserId> {
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        raw.parse::<i64>().ok().filter(|&n| n >= 1).map(UserId)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_parses_when_in_range() {
        assert_eq!(UserId::parse("1").unwrap().get(), 1);
        assert_eq!(UserId::parse("007").unwrap().get(), 7);
        assert_eq!(
            UserId::parse("9223372036854775807").unwrap().get(),
            i64::MAX
        );
    }

    #[test]
    fn id_is_rejected_with_400_when_out_of_range_or_not_digits() {
        for bad in [
            "0",
            "-1",
            "+1",
            "9223372036854775808",
            "99999999999999999999",
            "abc",
            "1.0",
            " 1",
            "",
            "1e3",
        ] {
            assert_eq!(UserId::parse(bad).unwrap_err().status(), 400, "{bad:?}");
        }
    }
}
