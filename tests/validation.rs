//! Properties of the input validation layer: what turns untrusted client input (query
//! strings, path ids, request bodies) into typed values. Every expectation below is
//! computed from the rules in API.md, never by calling the code under test.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value};
use user_api::domain::{Email, ListQuery, NewUser, PersonName, UserId, UserPatch};
use user_api::error::ApiError;
use user_api::http::body::{JsonObject, json_object};
use user_api::http::query::{decode, parse_pairs};
use user_api::http::{Body, Method, Request};

/// API.md: names are 1 to 100 characters after trimming.
const NAME_MAX_CHARS: usize = 100;
/// API.md: an email is at most 255 bytes.
const EMAIL_MAX_BYTES: usize = 255;
/// API.md: `limit` is 1 to 100.
const LIMIT_MAX: u128 = 100;
/// API.md: `offset` is 0 to 10 000 (`MAX_LIST_OFFSET`'s default).
const OFFSET_MAX: u128 = 10_000;
/// API.md: `MAX_BODY_BYTES` defaults to 65536.
const MAX_BODY: usize = 65_536;

/// Cases per property; the heavier ones use fewer. No regression files: this suite must
/// not write next to the sources.
fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ----- the rules of API.md, written out independently of the code under test -----

/// A name: surrounding white space trimmed, then 1 to 100 Unicode scalar values and no
/// control character. Returns the value the API must keep.
fn name_rule(raw: &str) -> Option<String> {
    let trimmed = raw.trim_matches(char::is_whitespace);
    let n = trimmed.chars().count();
    let ok = (1..=NAME_MAX_CHARS).contains(&n) && !trimmed.chars().any(char::is_control);
    ok.then(|| trimmed.to_owned())
}

/// An email: at most 255 bytes, exactly one `@`, a non-empty local part, a domain with a
/// `.`, no white space (and, as the module documents, no control character). Kept as
/// given.
fn email_rule(raw: &str) -> bool {
    if raw.len() > EMAIL_MAX_BYTES {
        return false;
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    if raw.matches('@').count() != 1 {
        return false;
    }
    let (local, domain) = raw.split_once('@').expect("one @");
    !local.is_empty() && domain.contains('.')
}

/// A decimal integer from ASCII digits only (no sign, no space), within `min..=max`.
fn decimal_rule(raw: &str, min: u128, max: u128) -> Option<u128> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = raw.trim_start_matches('0');
    if significant.len() > 20 {
        return None; // more than u64::MAX, so more than i64::MAX
    }
    let n: u128 = if significant.is_empty() {
        0
    } else {
        significant.parse().expect("at most 20 digits fit in u128")
    };
    (min..=max).contains(&n).then_some(n)
}

/// A user id: 1 to 2^63-1. API.md names only the range, and the code documents leading
/// zeros (`007`) as accepted, so the rule is "digits whose value is in range".
fn id_rule(raw: &str) -> Option<i64> {
    decimal_rule(raw, 1, i64::MAX as u128).map(|n| n as i64)
}

fn is_json_string_field(v: Option<&Value>) -> Option<Option<&str>> {
    match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s)),
        Some(_) => None,
    }
}

/// The body of POST and PUT: only the three known keys; both names required strings;
/// `email` absent, null or a valid string.
type Expected = (String, String, Option<String>);

fn new_user_rule(obj: &JsonObject) -> Option<Expected> {
    if obj
        .keys()
        .any(|k| !["first_name", "last_name", "email"].contains(&k.as_str()))
    {
        return None;
    }
    let name = |key: &str| match obj.get(key) {
        Some(Value::String(s)) => name_rule(s),
        _ => None,
    };
    let email = match is_json_string_field(obj.get("email"))? {
        None => None,
        Some(s) if email_rule(s) => Some(s.to_owned()),
        Some(_) => return None,
    };
    Some((name("first_name")?, name("last_name")?, email))
}

/// The body of PATCH: absent leaves a field alone, names cannot be null, `email: null`
/// clears the email.
type ExpectedPatch = (Option<String>, Option<String>, Option<Option<String>>);

fn patch_rule(obj: &JsonObject) -> Option<ExpectedPatch> {
    if obj
        .keys()
        .any(|k| !["first_name", "last_name", "email"].contains(&k.as_str()))
    {
        return None;
    }
    let name = |key: &str| match obj.get(key) {
        None => Some(None),
        Some(Value::String(s)) => name_rule(s).map(Some),
        Some(_) => None,
    };
    let email = match obj.get("email") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) if email_rule(s) => Some(Some(s.clone())),
        Some(_) => return None,
    };
    Some((name("first_name")?, name("last_name")?, email))
}

type ExpectedList = (i64, i64, Option<i64>, Option<String>);

/// The query of `GET /users`: only `limit` (1..=100, default 10), `offset` (0..=10 000,
/// default 0), `after_id` (an id) and `email` (an email), each at most once; `after_id` only with
/// a zero offset.
fn list_rule(pairs: &[(String, String)]) -> Option<ExpectedList> {
    let (mut limit, mut offset, mut after_id, mut email) = (10, 0, None, None);
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in pairs {
        let name = name.as_str();
        if seen.contains(&name) {
            return None;
        }
        match name {
            "limit" => limit = decimal_rule(value, 1, LIMIT_MAX)? as i64,
            "offset" => offset = decimal_rule(value, 0, OFFSET_MAX)? as i64,
            "after_id" => after_id = Some(id_rule(value)?),
            "email" if email_rule(value) => email = Some(value.clone()),
            _ => return None,
        }
        seen.push(name);
    }
    if after_id.is_some() && offset != 0 {
        return None;
    }
    Some((limit, offset, after_id, email))
}

// ----- helpers -----

fn post_json(body: impl Into<Vec<u8>>) -> Request {
    Request::new(Method::Post, "/user")
        .with_header("content-type", "application/json")
        .with_body(body)
}

fn body_of(bytes: &[u8]) -> Result<JsonObject, ApiError> {
    json_object(&post_json(bytes.to_vec()), MAX_BODY).map_err(ApiError::from)
}

fn new_user_from(bytes: &[u8]) -> Result<NewUser, ApiError> {
    NewUser::try_from(body_of(bytes)?)
}

fn patch_from(bytes: &[u8]) -> Result<UserPatch, ApiError> {
    UserPatch::try_from(body_of(bytes)?)
}

/// Every rejection of client input is a 400: the input is the client's fault.
fn must_be_400(e: &ApiError, input: &dyn std::fmt::Debug) -> Result<(), TestCaseError> {
    prop_assert_eq!(e.status(), 400, "{:?} for {:?}", e, input);
    Ok(())
}

fn as_strings(u: &NewUser) -> Expected {
    (
        u.first_name.as_ref().to_owned(),
        u.last_name.as_ref().to_owned(),
        u.email.as_ref().map(|e| e.as_ref().to_owned()),
    )
}

fn patch_strings(p: &UserPatch) -> ExpectedPatch {
    (
        p.first_name.as_ref().map(|n| n.as_ref().to_owned()),
        p.last_name.as_ref().map(|n| n.as_ref().to_owned()),
        p.email
            .as_ref()
            .map(|e| e.as_ref().map(|e| e.as_ref().to_owned())),
    )
}

/// `%XX` for every byte, in upper or lower case hex.
fn encode_all(s: &str, upper: bool) -> String {
    s.bytes()
        .map(|b| {
            if upper {
                format!("%{b:02X}")
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

/// Escapes only what a query needs escaped (`%`, `&`, `=`, `#`); `+` and the rest stay.
fn encode_min(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if matches!(c, '%' | '&' | '=' | '#') {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn encode(s: &str, how: u8) -> String {
    match how % 3 {
        0 => encode_min(s),
        1 => encode_all(s, true),
        _ => encode_all(s, false),
    }
}

/// A JSON string literal whose every UTF-16 unit is spelled `\uXXXX`: the same key as
/// `serde_json::to_string(s)`, written differently.
fn escaped_key(s: &str) -> String {
    let units: String = s.encode_utf16().map(|u| format!("\\u{u:04x}")).collect();
    format!("\"{units}\"")
}

// ----- strategies -----

/// White space, some of it also control characters (tab, LF, CR, NEL).
const SPACES: &[char] = &[
    ' ', '\t', '\n', '\r', '\u{0b}', '\u{0c}', '\u{85}', '\u{a0}', '\u{2003}', '\u{2028}',
    '\u{3000}',
];
/// Control characters that are not white space.
const CONTROLS: &[char] = &['\u{0}', '\u{1}', '\u{1b}', '\u{7f}', '\u{80}', '\u{9f}'];

fn space() -> impl Strategy<Value = char> {
    proptest::sample::select(SPACES)
}

fn control() -> impl Strategy<Value = char> {
    proptest::sample::select(CONTROLS)
}

/// Any character, biased towards the ones the rules care about.
fn tricky_char() -> impl Strategy<Value = char> {
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

fn tricky_string(max: usize) -> impl Strategy<Value = String> {
    vec(tricky_char(), 0..=max).prop_map(|v| v.into_iter().collect())
}

/// A character allowed inside a name: anything but a control character.
fn name_char() -> impl Strategy<Value = char> {
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
fn name_core(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    vec(name_char(), len).prop_map(|mut v| {
        for i in [0, v.len() - 1] {
            if v[i].is_whitespace() {
                v[i] = 'N';
            }
        }
        v.into_iter().collect()
    })
}

fn padding() -> impl Strategy<Value = String> {
    vec(space(), 0..4).prop_map(|v| v.into_iter().collect())
}

/// A valid name with white space around it, and the value the API must keep.
fn padded_valid_name() -> impl Strategy<Value = (String, String)> {
    (padding(), name_core(1..=NAME_MAX_CHARS), padding())
        .prop_map(|(l, core, r)| (format!("{l}{core}{r}"), core))
}

/// A character allowed in an email: not white space, not a control character, not `@`.
fn email_char() -> impl Strategy<Value = char> {
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

fn email_part(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    vec(email_char(), len).prop_map(|v| v.into_iter().collect())
}

/// An email valid by every rule but the length, which may go past 255 bytes.
fn email_shaped() -> impl Strategy<Value = String> {
    let local = prop_oneof![3 => email_part(1..20), 1 => email_part(120..260)];
    let free =
        (local, email_part(0..12), email_part(0..12)).prop_map(|(l, a, b)| format!("{l}@{a}.{b}"));
    prop_oneof![free, email_near_the_limit()]
}

/// An otherwise valid email of 250 to 260 bytes, with one- to four-byte characters, so
/// that the 255-byte limit is hit exactly and bytes are told from characters.
fn email_near_the_limit() -> impl Strategy<Value = String> {
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

fn valid_email() -> impl Strategy<Value = String> {
    (email_part(1..20), email_part(0..12), email_part(1..6))
        .prop_map(|(l, a, b)| format!("{l}@{a}.{b}"))
}

/// Strings around the id and number rules: in range, out of range, signed, padded.
fn number_text() -> impl Strategy<Value = String> {
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
fn not_quite_hex() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[0-9a-fA-F]",
        "[-+ xXgG_.\u{e9}]",
        "[^0-9a-fA-F%]",
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
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
fn field_value() -> impl Strategy<Value = Value> {
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
fn body_object() -> impl Strategy<Value = JsonObject> {
    prop_oneof![free_body_object(), mutated_valid_body()]
}

fn mutated_valid_body() -> impl Strategy<Value = JsonObject> {
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

fn free_body_object() -> impl Strategy<Value = JsonObject> {
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
fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
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
fn json_media_type() -> impl Strategy<Value = String> {
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

// ----- properties -----

proptest! {
    #![proptest_config(cases(256))]

    // --- names ---

    #[test]
    fn name_is_kept_trimmed_when_within_the_documented_limits(
        (raw, core) in padded_valid_name(),
        last in any::<bool>(),
    ) {
        let field = if last { "last_name" } else { "first_name" };
        let name = PersonName::parse(field, &raw);
        prop_assert!(name.is_ok(), "{:?} rejected: {:?}", raw, name);
        let name = name.unwrap();
        prop_assert_eq!(name.as_ref(), core.as_str());
    }

    #[test]
    fn name_is_400_naming_its_field_when_longer_than_100_chars(
        l in padding(),
        core in name_core(NAME_MAX_CHARS + 1..=NAME_MAX_CHARS + 150),
        r in padding(),
    ) {
        let raw = format!("{l}{core}{r}");
        let e = PersonName::parse("first_name", &raw).unwrap_err();
        must_be_400(&e, &raw)?;
        prop_assert!(
            matches!(e, ApiError::Validation { field: "first_name", .. }),
            "{:?}", e
        );
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
        let e = PersonName::parse("last_name", &bad).unwrap_err();
        must_be_400(&e, &bad)?;
        prop_assert!(matches!(e, ApiError::Validation { field: "last_name", .. }), "{:?}", e);
    }

    #[test]
    fn name_outcome_follows_the_rule_when_input_is_arbitrary(
        raw in prop_oneof![tricky_string(110), vec(any::<char>(), 0..130)
            .prop_map(|v| v.into_iter().collect::<String>())],
    ) {
        match (PersonName::parse("first_name", &raw), name_rule(&raw)) {
            (Ok(n), Some(want)) => prop_assert_eq!(n.as_ref(), want.as_str()),
            (Err(e), None) => must_be_400(&e, &raw)?,
            (got, want) => prop_assert!(false, "{:?}: got {:?}, rule says {:?}", raw, got, want),
        }
    }

    // --- emails ---

    #[test]
    fn email_is_kept_as_given_when_valid(email in valid_email()) {
        prop_assume!(email.len() <= EMAIL_MAX_BYTES);
        let parsed = Email::parse(&email);
        prop_assert!(parsed.is_ok(), "{:?} rejected: {:?}", email, parsed);
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed.as_ref(), email.as_str());
    }

    #[test]
    fn email_is_accepted_exactly_when_at_most_255_bytes_when_otherwise_valid(
        email in email_shaped(),
    ) {
        match Email::parse(&email) {
            Ok(e) => {
                prop_assert!(email.len() <= EMAIL_MAX_BYTES, "{} bytes accepted", email.len());
                prop_assert_eq!(e.as_ref(), email.as_str());
            }
            Err(e) => {
                prop_assert!(email.len() > EMAIL_MAX_BYTES, "{:?} rejected: {:?}", email, e);
                must_be_400(&e, &email)?;
            }
        }
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
        let e = Email::parse(&bad).unwrap_err();
        must_be_400(&e, &bad)?;
        prop_assert!(matches!(e, ApiError::Validation { field: "email", .. }), "{:?}", e);
    }

    #[test]
    fn email_outcome_follows_the_rule_when_input_is_arbitrary(
        raw in prop_oneof![tricky_string(30), email_shaped(),
            vec(any::<char>(), 0..40).prop_map(|v| v.into_iter().collect::<String>())],
    ) {
        match Email::parse(&raw) {
            Ok(e) => {
                prop_assert!(email_rule(&raw), "{:?} accepted against the rule", raw);
                prop_assert_eq!(e.as_ref(), raw.as_str());
            }
            Err(e) => {
                prop_assert!(!email_rule(&raw), "{:?} rejected: {:?}", raw, e);
                must_be_400(&e, &raw)?;
            }
        }
    }

    // --- ids ---

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
        let e = UserId::parse_named(&raw, "after_id").unwrap_err();
        must_be_400(&e, &raw)?;
        prop_assert!(matches!(e, ApiError::Validation { field: "after_id", .. }), "{:?}", e);
    }

    #[test]
    fn id_outcome_follows_the_rule_when_input_is_arbitrary(raw in number_text()) {
        let want = id_rule(&raw);
        match UserId::parse(&raw) {
            Ok(id) => prop_assert_eq!(Some(id.get()), want, "{:?}", raw),
            Err(e) => {
                prop_assert_eq!(want, None, "{:?} rejected: {:?}", raw, e);
                must_be_400(&e, &raw)?;
            }
        }
        prop_assert_eq!(UserId::parse_named(&raw, "after_id").ok().map(UserId::get), want);
    }

    // --- query strings ---

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
        let want = list_rule(&pairs);
        match ListQuery::parse(Some(&raw), OFFSET_MAX as i64) {
            Ok(q) => {
                let got = (
                    q.limit,
                    q.offset,
                    q.after_id.map(UserId::get),
                    q.email.map(|e| e.as_ref().to_owned()),
                );
                prop_assert_eq!(Some(got), want, "{:?}", raw);
            }
            Err(e) => {
                prop_assert_eq!(want, None, "{:?} rejected: {:?}", raw, e);
                must_be_400(&e, &raw)?;
            }
        }
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

    // --- bodies ---

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

proptest! {
    #![proptest_config(cases(256))]

    // --- NewUser and UserPatch from bodies ---

    #[test]
    fn new_user_round_trips_when_fields_are_valid(
        (first_raw, first) in padded_valid_name(),
        (last_raw, last) in padded_valid_name(),
        email in prop_oneof![
            Just(None),
            Just(Some(None)),
            valid_email().prop_filter("fits", |e| e.len() <= EMAIL_MAX_BYTES).prop_map(|e| Some(Some(e))),
        ],
    ) {
        // email: None = absent, Some(None) = null, Some(Some(s)) = a string.
        let mut obj = serde_json::json!({"first_name": first_raw, "last_name": last_raw});
        if let Some(e) = &email {
            obj["email"] = serde_json::to_value(e).unwrap();
        }
        let bytes = serde_json::to_vec(&obj).unwrap();
        let user = new_user_from(&bytes);
        prop_assert!(user.is_ok(), "{} rejected: {:?}", obj, user);
        prop_assert_eq!(as_strings(&user.unwrap()), (first, last, email.flatten()));
    }

    #[test]
    fn patch_round_trips_when_fields_are_valid(
        first in proptest::option::of(padded_valid_name()),
        last in proptest::option::of(padded_valid_name()),
        email in prop_oneof![
            Just(None),
            Just(Some(None)),
            valid_email().prop_filter("fits", |e| e.len() <= EMAIL_MAX_BYTES).prop_map(|e| Some(Some(e))),
        ],
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
        let patch = patch_from(&bytes);
        prop_assert!(patch.is_ok(), "{:?} rejected: {:?}", obj, patch);
        let patch = patch.unwrap();
        prop_assert_eq!(patch.is_empty(), obj.is_empty());
        prop_assert_eq!(
            patch_strings(&patch),
            (first.map(|(_, n)| n), last.map(|(_, n)| n), email)
        );
    }

    #[test]
    fn new_user_outcome_follows_the_rule_when_body_is_generated(obj in body_object()) {
        let bytes = serde_json::to_vec(&obj).unwrap();
        let want = new_user_rule(&obj);
        match new_user_from(&bytes) {
            Ok(u) => prop_assert_eq!(Some(as_strings(&u)), want, "{:?}", obj),
            Err(e) => {
                prop_assert_eq!(&want, &None, "{:?} rejected: {:?}", obj, e);
                must_be_400(&e, &obj)?;
            }
        }
    }

    #[test]
    fn patch_outcome_follows_the_rule_when_body_is_generated(obj in body_object()) {
        let bytes = serde_json::to_vec(&obj).unwrap();
        let want = patch_rule(&obj);
        match patch_from(&bytes) {
            Ok(p) => prop_assert_eq!(Some(patch_strings(&p)), want, "{:?}", obj),
            Err(e) => {
                prop_assert_eq!(&want, &None, "{:?} rejected: {:?}", obj, e);
                must_be_400(&e, &obj)?;
            }
        }
    }

    #[test]
    fn new_user_is_400_naming_the_field_when_a_name_is_not_a_string(
        bad in json_value().prop_filter("not a string", |v| !v.is_string()),
        which in any::<bool>(),
    ) {
        let field = if which { "first_name" } else { "last_name" };
        let mut obj = serde_json::json!({"first_name": "Ada", "last_name": "Lovelace"});
        obj[field] = bad;
        let e = new_user_from(&serde_json::to_vec(&obj).unwrap()).unwrap_err();
        must_be_400(&e, &obj)?;
        prop_assert!(
            matches!(&e, ApiError::Validation { field: f, .. } if *f == field),
            "{}: {:?}", obj, e
        );
    }
}
