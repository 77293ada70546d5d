//! `Version`: which state of a user a client saw, the value behind its strong `ETag`.
//!
//! It is the row's `updated_at`, which every UPDATE moves forward by at least one
//! microsecond even when two changes fall in the same microsecond (see `touch!()` in
//! `db/users.rs`): so it changes exactly when the user's representation does, and no two
//! states of one user share it. Its token is the microseconds since the Unix epoch in
//! decimal; clients must treat it as opaque.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Timestamp, User};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version(SystemTime);

impl Version {
    pub fn of(user: &User) -> Version {
        Version(user.updated_at.0)
    }

    /// The token of an entity tag, without quotes: decimal microseconds.
    pub fn token(self) -> u64 {
        let micros = self
            .0
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        u64::try_from(micros).unwrap_or(u64::MAX)
    }

    /// A version from a token this service issued. Anything else (another server's tag,
    /// a tag made up) is `None`: it matches no state of any user.
    pub fn from_token(token: &str) -> Option<Version> {
        if token.is_empty() || token.len() > 19 || !token.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let micros: u64 = token.parse().ok()?;
        UNIX_EPOCH
            .checked_add(Duration::from_micros(micros))
            .map(Version)
    }

    /// The `updated_at` this version stands for, as a statement's parameter.
    pub fn timestamp(self) -> Timestamp {
        Timestamp(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(micros: u64) -> Version {
        Version(UNIX_EPOCH + Duration::from_micros(micros))
    }

    #[test]
    fn a_token_round_trips_to_the_same_version() {
        for micros in [0, 1, 1_764_504_000_123_456, 9_999_999_999_999_999] {
            let v = at(micros);
            assert_eq!(v.token(), micros);
            assert_eq!(Version::from_token(&v.token().to_string()), Some(v));
        }
    }

    #[test]
    fn versions_one_microsecond_apart_have_different_tokens() {
        assert_ne!(
            at(1_764_504_000_123_456).token(),
            at(1_764_504_000_123_457).token()
        );
    }

    #[test]
    fn a_token_not_made_by_this_service_is_no_version() {
        for token in [
            "",
            "abc",
            "-1",
            "+5",
            "1.5",
            " 12",
            "12345678901234567890",
            "１",
        ] {
            assert_eq!(Version::from_token(token), None, "{token:?}");
        }
    }
}
