//! The query of `GET /users`: `limit`, `offset`, `after_id` and `email` within their
//! ranges, each at most once, else a 400.

use proptest::collection::vec;
use proptest::prelude::*;
use user_api::domain::ListQuery;
use user_api::domain::UserId;

use crate::rules::*;
use crate::strategies::*;
use crate::support::*;

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn list_query_outcome_follows_the_rule_when_parameters_are_generated(
        params in vec((
            prop_oneof![
                4 => Just("limit".to_owned()),
                4 => Just("offset".to_owned()),
                4 => Just("after_id".to_owned()),
                3 => Just("email".to_owned()),
                1 => "[a-z_]{0,8}",
                1 => Just("Limit".to_owned()),
            ],
            prop_oneof![3 => number_text(), 1 => email_shaped(), 1 => tricky_string(8)],
            any::<u8>(),
        ), 0..4),
        empty in any::<bool>(),
    ) {
        let raw: Vec<String> = params
            .iter()
            .map(|(k, v, how)| format!("{}={}", encode(k, *how), encode(v, how / 3)))
            .collect();
        let raw = raw.join(if empty { "&&" } else { "&" });
        let pairs: Vec<(String, String)> =
            params.into_iter().map(|(k, v, _)| (k, v)).collect();
        let got = ListQuery::parse(Some(&raw), OFFSET_MAX as i64).map(|q| {
            (
                q.limit,
                q.offset,
                q.after_id.map(UserId::get),
                q.email.map(|e| e.as_ref().to_owned()),
            )
        });
        must_follow_the_rule(got, list_rule(&pairs), &raw)?;
    }

    #[test]
    fn list_query_reads_every_parameter_when_all_are_in_range(
        limit in proptest::option::of(prop_oneof![Just(1i64), Just(100i64), 1i64..=100]),
        offset in proptest::option::of(prop_oneof![Just(0i64), Just(OFFSET_MAX as i64), 0i64..=OFFSET_MAX as i64]),
        after_id in proptest::option::of(prop_oneof![Just(1i64), Just(i64::MAX), 1i64..=i64::MAX]),
        email in proptest::option::of(valid_email()),
        order in Just((0..4).collect::<Vec<usize>>()).prop_shuffle(),
        how in any::<u8>(),
    ) {
        // after_id goes only with no offset or a zero one.
        let offset = if after_id.is_some() { offset.map(|_| 0) } else { offset };
        let all = [
            limit.map(|n| ("limit", n.to_string())),
            offset.map(|n| ("offset", n.to_string())),
            after_id.map(|n| ("after_id", n.to_string())),
            email.clone().map(|e| ("email", e)),
        ];
        let raw: Vec<String> = order
            .iter()
            .filter_map(|&i| all[i].as_ref())
            .map(|(k, v)| format!("{}={}", encode(k, how), encode(v, how / 3)))
            .collect();
        let raw = raw.join("&");
        let q = ListQuery::parse(Some(&raw), OFFSET_MAX as i64);
        prop_assert!(q.is_ok(), "{:?} rejected: {:?}", raw, q);
        let q = q.unwrap();
        prop_assert_eq!(q.limit, limit.unwrap_or(10));
        prop_assert_eq!(q.offset, offset.unwrap_or(0));
        prop_assert_eq!(q.after_id.map(UserId::get), after_id);
        prop_assert_eq!(q.email.map(|e| e.as_ref().to_owned()), email);
    }

    #[test]
    fn list_query_never_fails_with_more_than_400_when_input_is_arbitrary(
        raw in prop_oneof![
            tricky_string(40),
            "((limit|offset|after_id|email|x)=[%0-9a-f@.+-]{0,6}&?){0,5}",
        ],
    ) {
        if let Err(e) = ListQuery::parse(Some(&raw), OFFSET_MAX as i64) {
            must_be_400(&e, &raw)?;
        }
    }
}
