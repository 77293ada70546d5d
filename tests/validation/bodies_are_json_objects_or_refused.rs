//! Request bodies: JSON (415 otherwise), within the size limit (413 otherwise), one object
//! with no repeated key and bounded nesting (400 otherwise).

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::Map;
use serde_json::Value;
use user_api::http::Body;
use user_api::http::Method;
use user_api::http::Request;
use user_api::http::body::json_object;

use crate::rules::*;
use crate::strategies::*;
use crate::support::*;

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn body_is_415_when_content_type_is_not_json(
        ct in prop_oneof![
            Just(None),
            tricky_string(20).prop_map(Some),
            "(text/plain|application/xml|application/json-patch\\+json|application/jsonx|application/json; charset=(latin1|utf-16))"
                .prop_map(Some),
        ],
    ) {
        if let Some(ct) = &ct {
            let essence = ct.split(';').next().unwrap_or("").trim();
            prop_assume!(
                !essence.eq_ignore_ascii_case("application/json") || ct.contains("charset=")
            );
        }
        let mut req = Request::new(Method::Post, "/user").with_body("{}");
        if let Some(ct) = &ct {
            req = req.with_header("content-type", ct);
        }
        let e = json_object(&req, MAX_BODY).unwrap_err();
        prop_assert_eq!(e.status(), 415, "{:?}: {:?}", ct, e);
    }

    #[test]
    fn body_is_accepted_when_content_type_is_json_in_any_spelling(ct in json_media_type()) {
        let req = Request::new(Method::Post, "/user")
            .with_header("Content-Type", &ct)
            .with_body("{\"a\":1}");
        let obj = json_object(&req, MAX_BODY);
        prop_assert!(obj.is_ok(), "{:?}: {:?}", ct, obj);
    }

    #[test]
    fn body_is_413_when_it_was_too_large_whatever_the_content_type(
        ct in prop_oneof![json_media_type(), tricky_string(10)],
        limit in 0usize..1_000_000,
    ) {
        let mut req = Request::new(Method::Post, "/user").with_header("content-type", &ct);
        req.body = Body::TooLarge;
        let e = json_object(&req, limit).unwrap_err();
        prop_assert_eq!(e.status(), 413);
    }

    #[test]
    fn body_object_matches_a_reference_parser_when_bytes_are_hostile(body in hostile_body()) {
        let reference = serde_json::from_slice::<Value>(&body);
        match body_of(&body) {
            Ok(obj) => prop_assert_eq!(
                reference.ok(),
                Some(Value::Object(obj)),
                "accepted {:?}", String::from_utf8_lossy(&body)
            ),
            Err(e) => {
                must_be_400(&e, &String::from_utf8_lossy(&body))?;
                // Rejecting a valid object is right only for a repeated key.
                if let Ok(Value::Object(_)) = reference {
                    prop_assert!(e.to_string().contains("duplicate key"), "{:?}", e);
                }
            }
        }
        // Nor may the domain types turn hostile bytes into anything but a 400.
        if let Err(e) = new_user_from(&body) {
            must_be_400(&e, &String::from_utf8_lossy(&body))?;
        }
        if let Err(e) = patch_from(&body) {
            must_be_400(&e, &String::from_utf8_lossy(&body))?;
        }
    }

    #[test]
    fn body_is_400_when_a_top_level_key_repeats_in_any_spelling(
        entries in vec(("[a-z_]{1,6}", json_value()), 1..5),
        dup in any::<prop::sample::Index>(),
        dup_value in json_value(),
        escape in any::<bool>(),
        repeat in any::<bool>(),
    ) {
        // Unique keys first; then maybe the same key again, perhaps spelt with escapes.
        let mut seen = Map::new();
        for (k, v) in entries {
            seen.entry(k).or_insert(v);
        }
        let mut parts: Vec<String> = seen
            .iter()
            .map(|(k, v)| format!("{}:{}", serde_json::to_string(k).unwrap(), v))
            .collect();
        if repeat {
            let key = seen.keys().nth(dup.index(seen.len())).unwrap();
            let spelt = if escape { escaped_key(key) } else { serde_json::to_string(key).unwrap() };
            parts.push(format!("{spelt}:{dup_value}"));
        }
        let body = format!("{{{}}}", parts.join(","));
        match body_of(body.as_bytes()) {
            Ok(obj) => {
                prop_assert!(!repeat, "repeated key accepted: {}", body);
                prop_assert_eq!(obj.keys().collect::<Vec<_>>(), seen.keys().collect::<Vec<_>>());
                let reference: Value = serde_json::from_str(&body).unwrap();
                prop_assert_eq!(Value::Object(obj), reference);
            }
            Err(e) => {
                prop_assert!(repeat, "{} rejected: {:?}", body, e);
                must_be_400(&e, &body)?;
                prop_assert!(e.to_string().contains("duplicate key"), "{:?}", e);
            }
        }
    }
}
proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn body_nesting_is_accepted_or_400_when_deep_and_accepted_when_shallow(
        depth in prop_oneof![1usize..100, 100usize..20_000],
        arrays in any::<bool>(),
    ) {
        let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
        let body = format!("{{\"x\":{}null{}}}", open.repeat(depth), close.repeat(depth));
        match body_of(body.as_bytes()) {
            Ok(obj) => prop_assert!(obj.contains_key("x")),
            Err(e) => {
                prop_assert!(depth >= 100, "depth {} rejected: {:?}", depth, e);
                must_be_400(&e, &depth)?;
            }
        }
    }
}
