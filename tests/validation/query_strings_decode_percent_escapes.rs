//! Query strings: `%XX` escapes decode, pairs come back in order, and nothing worse than
//! a 400 comes of any input.

use proptest::collection::vec;
use proptest::prelude::*;
use user_api::http::query::decode;
use user_api::http::query::parse_pairs;

use crate::strategies::*;
use crate::support::*;

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn query_decode_is_identity_when_there_is_no_percent(raw in tricky_string(40)) {
        prop_assume!(!raw.contains('%'));
        prop_assert_eq!(decode(&raw).ok(), Some(raw.clone()));
    }

    #[test]
    fn query_decode_undoes_percent_encoding_when_any_byte_is_escaped(
        raw in prop_oneof![tricky_string(30), "[%&=+#a-z]{0,20}"],
        how in any::<u8>(),
    ) {
        let encoded = encode(&raw, how);
        prop_assert_eq!(decode(&encoded).ok(), Some(raw.clone()), "{:?}", encoded);
    }

    #[test]
    fn query_decode_is_400_when_a_percent_is_not_followed_by_two_hex_digits(
        prefix in "[a-z0-9+.]{0,5}",
        a in not_quite_hex(),
        b in not_quite_hex(),
        suffix in "[a-z0-9+.]{0,5}",
    ) {
        let raw = format!("{prefix}%{a}{b}{suffix}");
        // Two hex digits are a valid escape (RFC 3986 pct-encoded); anything else is not.
        let after: Vec<char> = raw[prefix.len() + 1..].chars().take(2).collect();
        prop_assume!(!(after.len() == 2 && after.iter().all(char::is_ascii_hexdigit)));
        match decode(&raw) {
            Ok(s) => prop_assert!(false, "{:?} decoded to {:?}", raw, s),
            Err(e) => must_be_400(&e.into(), &raw)?,
        }
    }

    #[test]
    fn query_pairs_come_back_decoded_and_in_order_when_encoded(
        pairs in vec((tricky_string(8), tricky_string(8), any::<u8>()), 0..6),
        gaps in vec(0usize..3, 0..7),
    ) {
        let mut raw = String::new();
        for (i, (k, v, how)) in pairs.iter().enumerate() {
            raw.push_str(&"&".repeat(gaps.get(i).copied().unwrap_or(0)));
            if i > 0 {
                raw.push('&');
            }
            raw.push_str(&format!("{}={}", encode(k, *how), encode(v, how / 3)));
        }
        raw.push_str(&"&".repeat(gaps.last().copied().unwrap_or(0)));
        let want: Vec<(String, String)> =
            pairs.into_iter().map(|(k, v, _)| (k, v)).collect();
        prop_assert_eq!(parse_pairs(&raw).ok(), Some(want), "{:?}", raw);
    }

    #[test]
    fn query_pairs_never_fail_with_more_than_400_when_input_is_arbitrary(
        raw in prop_oneof![tricky_string(40), "[%&=a-fx0-9+\u{e9}]{0,30}"],
    ) {
        if let Err(e) = parse_pairs(&raw) {
            must_be_400(&e.into(), &raw)?;
        }
    }
}
