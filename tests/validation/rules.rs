//! The rules of API.md, written out independently of the code under test.

use serde_json::Value;
use user_api::http::body::JsonObject;

/// API.md: names are 1 to 100 characters after trimming.
pub const NAME_MAX_CHARS: usize = 100;
/// API.md: an email is at most 255 bytes.
pub const EMAIL_MAX_BYTES: usize = 255;
/// API.md: `limit` is 1 to 100.
pub const LIMIT_MAX: u128 = 100;
/// API.md: `offset` is 0 to 10 000 (`MAX_LIST_OFFSET`'s default).
pub const OFFSET_MAX: u128 = 10_000;
/// API.md: `MAX_BODY_BYTES` defaults to 65536.
pub const MAX_BODY: usize = 65_536;

/// A name: surrounding white space trimmed, then 1 to 100 Unicode scalar values and no
/// control character. Returns the value the API must keep.
pub fn name_rule(raw: &str) -> Option<String> {
    let trimmed = raw.trim_matches(char::is_whitespace);
    let n = trimmed.chars().count();
    let ok = (1..=NAME_MAX_CHARS).contains(&n) && !trimmed.chars().any(char::is_control);
    ok.then(|| trimmed.to_owned())
}

/// An email: at most 255 bytes, exactly one `@`, a non-empty local part, a domain with a
/// `.`, no white space (and, as the module documents, no control character). Kept as
/// given.
pub fn email_rule(raw: &str) -> bool {
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
pub fn decimal_rule(raw: &str, min: u128, max: u128) -> Option<u128> {
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
pub fn id_rule(raw: &str) -> Option<i64> {
    decimal_rule(raw, 1, i64::MAX as u128).map(|n| n as i64)
}

pub fn is_json_string_field(v: Option<&Value>) -> Option<Option<&str>> {
    match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s)),
        Some(_) => None,
    }
}

/// Whether every key of `obj` is one of the three fields of a user (a body with any other
/// is refused).
fn has_only_user_fields(obj: &JsonObject) -> bool {
    obj.keys()
        .all(|k| ["first_name", "last_name", "email"].contains(&k.as_str()))
}

/// The body of POST and PUT: only the three known keys; both names required strings;
/// `email` absent, null or a valid string.
pub type Expected = (String, String, Option<String>);

pub fn new_user_rule(obj: &JsonObject) -> Option<Expected> {
    if !has_only_user_fields(obj) {
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
pub type ExpectedPatch = (Option<String>, Option<String>, Option<Option<String>>);

pub fn patch_rule(obj: &JsonObject) -> Option<ExpectedPatch> {
    if !has_only_user_fields(obj) {
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

pub type ExpectedList = (i64, i64, Option<i64>, Option<String>);

/// The query of `GET /users`: only `limit` (1..=100, default 10), `offset` (0..=10 000,
/// default 0), `after_id` (an id) and `email` (an email), each at most once; `after_id` only with
/// a zero offset.
pub fn list_rule(pairs: &[(String, String)]) -> Option<ExpectedList> {
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
