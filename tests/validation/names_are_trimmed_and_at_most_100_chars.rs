//! `first_name` and `last_name`: trimmed, then 1 to 100 characters with no control
//! character, or a 400 naming the field.

use proptest::collection::vec;
use proptest::prelude::*;
use user_api::domain::PersonName;

use crate::rules::*;
use crate::strategies::*;
use crate::support::*;

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn name_is_kept_trimmed_when_within_the_documented_limits(
        (raw, core) in padded_valid_name(),
        last in any::<bool>(),
    ) {
        let field = if last { "last_name" } else { "first_name" };
        let name = PersonName::parse(field, &raw).map(|n| n.as_ref().to_owned());
        must_follow_the_rule(name, Some(core), &raw)?;
    }

    #[test]
    fn name_is_400_naming_its_field_when_longer_than_100_chars(
        l in padding(),
        core in name_core(NAME_MAX_CHARS + 1..=NAME_MAX_CHARS + 150),
        r in padding(),
    ) {
        let raw = format!("{l}{core}{r}");
        must_be_400_naming(PersonName::parse("first_name", &raw), "first_name", &raw)?;
    }

    #[test]
    fn name_is_400_naming_its_field_when_it_holds_a_control_char(
        l in padding(),
        core in name_core(1..=NAME_MAX_CHARS - 1),
        r in padding(),
        at in any::<prop::sample::Index>(),
        c in control(),
    ) {
        // A control character that is not white space survives trimming wherever it is.
        let mut chars: Vec<char> = core.chars().collect();
        chars.insert(at.index(chars.len() + 1), c);
        let bad = format!("{l}{}{r}", chars.iter().collect::<String>());
        must_be_400_naming(PersonName::parse("last_name", &bad), "last_name", &bad)?;
    }

    #[test]
    fn name_outcome_follows_the_rule_when_input_is_arbitrary(
        raw in prop_oneof![tricky_string(110), vec(any::<char>(), 0..130)
            .prop_map(|v| v.into_iter().collect::<String>())],
    ) {
        let name = PersonName::parse("first_name", &raw).map(|n| n.as_ref().to_owned());
        must_follow_the_rule(name, name_rule(&raw), &raw)?;
    }
}
