//! `email`: at most 255 bytes, one `@`, a dotted domain, no white space, kept as given;
//! anything else is a 400 naming the field.

use proptest::collection::vec;
use proptest::prelude::*;
use user_api::domain::Email;
use user_api::error::ApiError;

use crate::rules::*;
use crate::strategies::*;
use crate::support::*;

/// The email as the API keeps it, or why it refused it.
fn parse(raw: &str) -> Result<String, ApiError> {
    Email::parse(raw).map(|e| e.as_ref().to_owned())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn email_is_kept_as_given_when_valid(email in valid_email()) {
        prop_assume!(email.len() <= EMAIL_MAX_BYTES);
        must_follow_the_rule(parse(&email), Some(email.clone()), &email)?;
    }

    #[test]
    fn email_is_accepted_exactly_when_at_most_255_bytes_when_otherwise_valid(
        email in email_shaped(),
    ) {
        let fits = email.len() <= EMAIL_MAX_BYTES;
        must_follow_the_rule(parse(&email), fits.then(|| email.clone()), &email)?;
    }

    #[test]
    fn email_is_400_naming_its_field_when_it_breaks_a_rule(
        email in valid_email(),
        breakage in 0u8..5,
        c in prop_oneof![space(), control()],
        at in any::<prop::sample::Index>(),
    ) {
        let (local, domain) = email.split_once('@').unwrap();
        let bad = match breakage {
            0 => format!("@{domain}"),                       // empty local part
            1 => format!("{local}@{}", domain.replace('.', "")), // no dot in the domain
            2 => format!("{local}@@{domain}"),              // two @
            3 => local.to_owned(),                           // no @
            _ => {
                let mut chars: Vec<char> = email.chars().collect();
                let i = at.index(chars.len() + 1);
                chars.insert(i, c);                          // white space or control
                chars.into_iter().collect()
            }
        };
        must_be_400_naming(parse(&bad), "email", &bad)?;
    }

    #[test]
    fn email_outcome_follows_the_rule_when_input_is_arbitrary(
        raw in prop_oneof![tricky_string(30), email_shaped(),
            vec(any::<char>(), 0..40).prop_map(|v| v.into_iter().collect::<String>())],
    ) {
        must_follow_the_rule(parse(&raw), email_rule(&raw).then(|| raw.clone()), &raw)?;
    }
}
