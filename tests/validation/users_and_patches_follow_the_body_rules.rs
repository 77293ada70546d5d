//! `NewUser` (POST, PUT) and `UserPatch` (PATCH) from a body: valid fields round-trip,
//! anything else is a 400 naming the field.

use proptest::prelude::*;
use serde_json::Map;

use crate::rules::*;
use crate::strategies::*;
use crate::support::*;

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn new_user_round_trips_when_fields_are_valid(
        (first_raw, first) in padded_valid_name(),
        (last_raw, last) in padded_valid_name(),
        email in email_field(),
    ) {
        let mut obj = serde_json::json!({"first_name": first_raw, "last_name": last_raw});
        if let Some(e) = &email {
            obj["email"] = serde_json::to_value(e).unwrap();
        }
        let bytes = serde_json::to_vec(&obj).unwrap();
        let user = new_user_from(&bytes).map(|u| as_strings(&u));
        must_follow_the_rule(user, Some((first, last, email.flatten())), &obj)?;
    }

    #[test]
    fn patch_round_trips_when_fields_are_valid(
        first in proptest::option::of(padded_valid_name()),
        last in proptest::option::of(padded_valid_name()),
        email in email_field(),
    ) {
        let mut obj = Map::new();
        if let Some((raw, _)) = &first {
            obj.insert("first_name".into(), raw.clone().into());
        }
        if let Some((raw, _)) = &last {
            obj.insert("last_name".into(), raw.clone().into());
        }
        if let Some(e) = &email {
            obj.insert("email".into(), serde_json::to_value(e).unwrap());
        }
        let bytes = serde_json::to_vec(&obj).unwrap();
        let patch = patch_from(&bytes).map(|p| (p.is_empty(), patch_strings(&p)));
        let fields = (first.map(|(_, n)| n), last.map(|(_, n)| n), email);
        must_follow_the_rule(patch, Some((obj.is_empty(), fields)), &obj)?;
    }

    #[test]
    fn new_user_outcome_follows_the_rule_when_body_is_generated(obj in body_object()) {
        let bytes = serde_json::to_vec(&obj).unwrap();
        let user = new_user_from(&bytes).map(|u| as_strings(&u));
        must_follow_the_rule(user, new_user_rule(&obj), &obj)?;
    }

    #[test]
    fn patch_outcome_follows_the_rule_when_body_is_generated(obj in body_object()) {
        let bytes = serde_json::to_vec(&obj).unwrap();
        let patch = patch_from(&bytes).map(|p| patch_strings(&p));
        must_follow_the_rule(patch, patch_rule(&obj), &obj)?;
    }

    #[test]
    fn new_user_is_400_naming_the_field_when_a_name_is_not_a_string(
        bad in json_value().prop_filter("not a string", |v| !v.is_string()),
        which in any::<bool>(),
    ) {
        let field = if which { "first_name" } else { "last_name" };
        let mut obj = serde_json::json!({"first_name": "Ada", "last_name": "Lovelace"});
        obj[field] = bad;
        let user = new_user_from(&serde_json::to_vec(&obj).unwrap()).map(|u| as_strings(&u));
        must_be_400_naming(user, field, &obj)?;
    }
}
