//! User ids, in the path and as `after_id`: digits whose value is 1 to 2^63-1, else 400.

use proptest::prelude::*;
use user_api::domain::UserId;
use user_api::error::ApiError;

use crate::rules::*;
use crate::strategies::*;
use crate::support::*;

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn id_parses_to_its_value_when_in_1_to_i64_max(n in 1..=i64::MAX, zeros in 0usize..3) {
        let raw = format!("{}{n}", "0".repeat(zeros));
        prop_assert_eq!(UserId::parse(&raw).map(UserId::get).ok(), Some(n));
        prop_assert_eq!(UserId::parse_named(&raw, "after_id").map(UserId::get).ok(), Some(n));
        prop_assert_eq!(UserId::parse(&raw).unwrap().to_string(), n.to_string());
    }

    #[test]
    fn id_is_400_when_zero_negative_or_past_i64_max(
        raw in prop_oneof![
            (i64::MIN..=0).prop_map(|n| n.to_string()),
            (i64::MAX as u128 + 1..=u128::MAX).prop_map(|n| n.to_string()),
            "0{1,5}",
        ],
    ) {
        let e = UserId::parse(&raw).unwrap_err();
        must_be_400(&e, &raw)?;
        prop_assert!(matches!(e, ApiError::BadRequest(_)), "path id error names a field: {:?}", e);
        must_be_400_naming(UserId::parse_named(&raw, "after_id"), "after_id", &raw)?;
    }

    #[test]
    fn id_outcome_follows_the_rule_when_input_is_arbitrary(raw in number_text()) {
        let want = id_rule(&raw);
        must_follow_the_rule(UserId::parse(&raw).map(UserId::get), want, &raw)?;
        prop_assert_eq!(UserId::parse_named(&raw, "after_id").ok().map(UserId::get), want);
    }
}
