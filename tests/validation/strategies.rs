//! Generators of client input: tricky characters, names and emails near their limits,
//! numbers, JSON values and bodies, and media types.

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{Map, Value};
use user_api::http::body::JsonObject;

use crate::rules::*;

/// White space, some of it also control characters (tab, LF, CR, NEL).
pub const SPACES: &[char] = &[
    ' ', '\t', '\n', '\r', '\u{0b}', '\u{0c}', '\u{85}', '\u{a0}', '\u{2003}', '\u{2028}',
    '\u{3000}',
];
/// Control characters that are not white space.
pub const CONTROLS: &[char] = &['\u{0}', '\u{1}', '\u{1b}', '\u{7f}', '\u{80}', '\u{9f}'];

pub fn space() -> impl Strategy<Value = char> {
    proptest::sample::select(SPACES)
}

pub fn control() -> impl Strategy<Value = char> {
    proptest::sample::select(CONTROLS)
}

/// Any character, biased towards the ones the rules care about.
pub fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        2 => any::<char>(),
        1 => space(),
        1 => control(),
        1 => Just('@'),
        1 => Just('.'),
        1 => Just('é'),
        1 => Just('😀'),
    ]
}

pub fn tricky_string(max: usize) -> impl Strategy<Value = String> {
    vec(tricky_char(), 0..=max).prop_map(|v| v.into_iter().collect())
}

/// A character allowed inside a name: anything but a control character.
pub fn name_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range('a', 'z'),
        1 => Just(' '),
        1 => Just('-'),
        1 => Just('é'),
        1 => Just('😀'),
        2 => any::<char>().prop_filter("not a control", |c| !c.is_control()),
    ]
}

/// A name core of `len` chars with no control character and no white space at either
/// end, so that trimming leaves it whole.
pub fn name_core(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    vec(name_char(), len).prop_map(|mut v| {
        for i in [0, v.len() - 1] {
            if v[i].is_whitespace() {
                v[i] = 'N';
            }
        }
        v.into_iter().collect()
    })
}

pub fn padding() -> impl Strategy<Value = String> {
    vec(space(), 0..4).prop_map(|v| v.into_iter().collect())
}

/// A valid name with white space around it, and the value the API must keep.
pub fn padded_valid_name() -> impl Strategy<Value = (String, String)> {
    (padding(), name_core(1..=NAME_MAX_CHARS), padding())
        .prop_map(|(l, core, r)| (format!("{l}{core}{r}"), core))
}

/// A character allowed in an email: not white space, not a control character, not `@`.
pub fn email_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => proptest::char::range('a', 'z'),
        1 => proptest::char::range('A', 'Z'),
        1 => proptest::sample::select(&['.', '+', '-', '_', '0', '9'][..]),
        1 => Just('é'),
        1 => any::<char>().prop_filter("allowed in an email", |c| {
            !c.is_whitespace() && !c.is_control() && *c != '@'
        }),
    ]
}

pub fn email_part(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    vec(email_char(), len).prop_map(|v| v.into_iter().collect())
}

/// An email valid by every rule but the length, which may go past 255 bytes.
pub fn email_shaped() -> impl Strategy<Value = String> {
    let local = prop_oneof![3 => email_part(1..20), 1 => email_part(120..260)];
    let free =
        (local, email_part(0..12), email_part(0..12)).prop_map(|(l, a, b)| format!("{l}@{a}.{b}"));
    prop_oneof![free, email_near_the_limit()]
}

/// An otherwise valid email of 250 to 260 bytes, with one- to four-byte characters, so
/// that the 255-byte limit is hit exactly and bytes are told from characters.
pub fn email_near_the_limit() -> impl Strategy<Value = String> {
    let wide = proptest::sample::select(&['a', 'é', '€', '😀'][..]);
    (250usize..=260, vec(wide, 0..60)).prop_map(|(target, wide)| {
        let domain = "@example.com";
        let mut local = String::new();
        for c in wide {
            if local.len() + c.len_utf8() + domain.len() <= target {
                local.push(c);
            }
        }
        while local.len() + domain.len() < target {
            local.push('a');
        }
        format!("{local}{domain}")
    })
}

pub fn valid_email() -> impl Strategy<Value = String> {
    (email_part(1..20), email_part(0..12), email_part(1..6))
        .prop_map(|(l, a, b)| format!("{l}@{a}.{b}"))
}

/// Strings around the id and number rules: in range, out of range, signed, padded.
pub fn number_text() -> impl Strategy<Value = String> {
    const EDGES: &[&str] = &[
        "0",
        "1",
        "2",
        "10",
        "99",
        "100",
        "101",
        "9223372036854775806",
        "9223372036854775807",
        "9223372036854775808",
    ];
    prop_oneof![
        6 => proptest::sample::select(EDGES).prop_map(str::to_owned),
        1 => (0i64..=120).prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<u128>().prop_map(|n| n.to_string()),
        1 => (1usize..4, 0u64..200).prop_map(|(z, n)| format!("{}{n}", "0".repeat(z))),
        1 => (i64::MAX - 3..=i64::MAX).prop_map(|n| n.to_string()),
        1 => (0u64..4).prop_map(|d| (i64::MAX as u64 + d).to_string()),
        1 => "[-+ ]?[0-9]{1,3}[ .eEx]?[0-9]?",
        1 => "[0-9]{19,22}",
        1 => tricky_string(6),
    ]
}

/// What may follow a `%`: nothing, a hex digit, or a near miss (signs, space, `x`, `g`,
/// non-ASCII) that a lenient number parser might let through.
pub fn not_quite_hex() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[0-9a-fA-F]",
        "[-+ xXgG_.\u{e9}]",
        "[^0-9a-fA-F%]",
    ]
}

/// Any JSON value, a few levels deep.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        tricky_string(12).prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec(("[a-z_]{0,6}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A value for one of the body's fields: usually a plausible string, sometimes anything.
pub fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => padded_valid_name().prop_map(|(raw, _)| Value::String(raw)),
        2 => email_shaped().prop_map(Value::String),
        2 => tricky_string(20).prop_map(Value::String),
        1 => name_core(101..=140).prop_map(Value::String),
        2 => Just(Value::Null),
        2 => json_value(),
    ]
}

/// A body object: either a valid body with a few fields overwritten, or keys and values
/// drawn freely (the known keys often, an unknown one now and then).
pub fn body_object() -> impl Strategy<Value = JsonObject> {
    prop_oneof![free_body_object(), mutated_valid_body()]
}

pub fn mutated_valid_body() -> impl Strategy<Value = JsonObject> {
    (
        padded_valid_name(),
        padded_valid_name(),
        proptest::option::of(valid_email()),
        free_body_object(),
    )
        .prop_map(|((first, _), (last, _), email, overrides)| {
            let mut obj = Map::new();
            obj.insert("first_name".into(), first.into());
            obj.insert("last_name".into(), last.into());
            if let Some(email) = email {
                obj.insert("email".into(), email.into());
            }
            for (k, v) in overrides.into_iter().take(1) {
                obj.insert(k, v);
            }
            obj
        })
}

pub fn free_body_object() -> impl Strategy<Value = JsonObject> {
    let key = prop_oneof![
        4 => Just("first_name".to_owned()),
        4 => Just("last_name".to_owned()),
        4 => Just("email".to_owned()),
        1 => "[a-zA-Z_]{0,12}",
        1 => Just("First_Name".to_owned()),
    ];
    vec((key, field_value()), 0..5).prop_map(|kv| kv.into_iter().collect::<Map<_, _>>())
}

/// Bytes that are JSON, almost JSON, or not JSON at all.
pub fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just(" ".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("\"first_name\"".to_owned()),
        Just("\"last_name\"".to_owned()),
        Just("\"email\"".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        Just("\"a\\\"".to_owned()),
        Just("1e999".to_owned()),
        Just("-1e-999".to_owned()),
        Just("-0".to_owned()),
        Just("\u{feff}".to_owned()),
        "-?[0-9]{1,400}(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,5})?",
        "\"[a-z@. ]{0,10}\"",
    ];
    prop_oneof![
        vec(any::<u8>(), 0..200),
        vec(token, 0..40).prop_map(|t| t.concat().into_bytes()),
        (vec(any::<u8>(), 0..20), vec(any::<u8>(), 0..20)).prop_map(|(a, b)| {
            let mut out = b"{\"first_name\":\"".to_vec();
            out.extend(a);
            out.extend_from_slice(b"\",\"last_name\":\"");
            out.extend(b);
            out.extend_from_slice(b"\"}");
            out
        }),
        (1usize..3000, any::<bool>()).prop_map(|(depth, arrays)| {
            let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
            format!(
                "{{\"first_name\":{}1{}}}",
                open.repeat(depth),
                close.repeat(depth)
            )
            .into_bytes()
        }),
    ]
}

/// `application/json`, in any case, with optional white space and a UTF-8 charset.
pub fn json_media_type() -> impl Strategy<Value = String> {
    let charset = prop_oneof![
        Just(String::new()),
        Just("; charset=utf-8".to_owned()),
        Just(";charset=UTF-8".to_owned()),
        Just("; charset=\"utf-8\"".to_owned()),
        Just(" ; Charset = Utf-8 ".to_owned()),
    ];
    (vec(any::<bool>(), 16), " {0,2}", charset).prop_map(|(upper, ws, charset)| {
        let essence: String = "application/json"
            .chars()
            .zip(upper)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect();
        format!("{ws}{essence}{ws}{charset}")
    })
}

/// An `email` field: absent (`None`), `null` (`Some(None)`) or a valid string.
pub fn email_field() -> impl Strategy<Value = Option<Option<String>>> {
    prop_oneof![
        Just(None),
        Just(Some(None)),
        valid_email()
            .prop_filter("fits", |e| e.len() <= EMAIL_MAX_BYTES)
            .prop_map(|e| Some(Some(e))),
    ]
}
