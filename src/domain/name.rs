//! `PersonName`: a first or last name, trimmed, 1 to 100 characters, no control
//! characters.

use crate::error::ApiError;

pub const MAX_CHARS: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    /// Parses the value of the body field `field`.
    pub fn parse(field: &'static str, raw: &str) -> Result<PersonName, ApiError> {
        let name = raw.trim();
        let chars = name.chars().count();
        if chars == 0 {
            return Err(ApiError::validation(
                field,
                format!("{field} must not be empty"),
            ));
        }
        if chars > MAX_CHARS {
            return Err(ApiError::validation(
                field,
                format!("{field} must be at most {MAX_CHARS} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(ApiError::validation(
                field,
                format!("{field} must not contain control characters"),
            ));
        }
        Ok(PersonName(name.to_owned()))
    }
}

impl AsRef<str> for PersonName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_is_trimmed_when_valid() {
        assert_eq!(
            PersonName::parse("first_name", "  Ada \t")
                .unwrap()
                .as_ref(),
            "Ada"
        );
        assert_eq!(
            PersonName::parse("first_name", "José-María")
                .unwrap()
                .as_ref(),
            "José-María"
        );
    }

    #[test]
    fn name_counts_characters_not_bytes() {
        assert!(PersonName::parse("last_name", &"é".repeat(100)).is_ok());
        assert!(PersonName::parse("last_name", &"é".repeat(101)).is_err());
    }

    #[test]
    fn name_is_rejected_with_its_field_when_invalid() {
        for bad in [
            "",
            "   ",
            "\u{3000}",
            "a\u{0}b",
            "a\nb",
            "tab\tinside",
            &"x".repeat(101),
        ] {
            let e = PersonName::parse("last_name", bad).unwrap_err();
            assert!(
                matches!(
                    &e,
                    ApiError::Validation {
                        field: "last_name",
                        ..
                    }
                ),
                "{bad:?}: {e:?}"
            );
        }
    }
}
