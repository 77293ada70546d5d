//! `Email`: at most 255 bytes, exactly one `@`, a non-empty local part, a domain with a
//! `.`, and no white space or control characters. Kept as given; uniqueness ignores case.

use crate::error::ApiError;

pub const MAX_BYTES: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, ApiError> {
        let fail = |msg: &str| Err(ApiError::validation("email", msg));
        if raw.len() > MAX_BYTES {
            return fail("email must be at most 255 bytes");
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return fail("email must not contain white space or control characters");
        }
        let mut parts = raw.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return fail("email must contain exactly one @");
        };
        if local.is_empty() {
            return fail("email must have a part before the @");
        }
        if !domain.contains('.') {
            return fail("email must have a domain containing a dot");
        }
        Ok(Email(raw.to_owned()))
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_kept_as_given_when_valid() {
        for ok in ["ada@example.com", "Ada.L+tag@Example.co.uk", "x@y.z"] {
            assert_eq!(Email::parse(ok).unwrap().as_ref(), ok);
        }
        let longest = format!("{}@example.com", "a".repeat(MAX_BYTES - 12));
        assert!(Email::parse(&longest).is_ok());
    }

    #[test]
    fn email_is_rejected_when_it_breaks_a_rule() {
        let too_long = format!("{}@example.com", "a".repeat(MAX_BYTES - 11));
        for bad in [
            "",
            "ada",
            "ada@example",
            "@example.com",
            "a@b@c.com",
            "ada @x.com",
            "ada@x.com ",
            "a\u{0}@x.com",
            "a\u{a0}b@x.com",
            &too_long,
        ] {
            let e = Email::parse(bad).unwrap_err();
            assert!(
                matches!(&e, ApiError::Validation { field: "email", .. }),
                "{bad:?}"
            );
        }
    }
}
