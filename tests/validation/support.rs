//! What the properties share: the runner's settings, requests and their parsing, and the
//! percent-encodings of query text.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use user_api::domain::{NewUser, UserPatch};
use user_api::error::ApiError;
use user_api::http::body::{JsonObject, json_object};
use user_api::http::{Method, Request};

use crate::rules::{Expected, ExpectedPatch, MAX_BODY};

/// Cases per property; the heavier ones use fewer. No regression files: this suite must
/// not write next to the sources.
pub fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

pub fn post_json(body: impl Into<Vec<u8>>) -> Request {
    Request::new(Method::Post, "/user")
        .with_header("content-type", "application/json")
        .with_body(body)
}

pub fn body_of(bytes: &[u8]) -> Result<JsonObject, ApiError> {
    json_object(&post_json(bytes.to_vec()), MAX_BODY).map_err(ApiError::from)
}

pub fn new_user_from(bytes: &[u8]) -> Result<NewUser, ApiError> {
    NewUser::try_from(body_of(bytes)?)
}

pub fn patch_from(bytes: &[u8]) -> Result<UserPatch, ApiError> {
    UserPatch::try_from(body_of(bytes)?)
}

/// Every rejection of client input is a 400: the input is the client's fault.
pub fn must_be_400(e: &ApiError, input: &dyn std::fmt::Debug) -> Result<(), TestCaseError> {
    prop_assert_eq!(e.status(), 400, "{:?} for {:?}", e, input);
    Ok(())
}

/// `got` agrees with the rule's `want`: the same value, or a 400 where the rule refuses.
pub fn must_follow_the_rule<T: PartialEq + std::fmt::Debug>(
    got: Result<T, ApiError>,
    want: Option<T>,
    input: &dyn std::fmt::Debug,
) -> Result<(), TestCaseError> {
    match got {
        Ok(value) => prop_assert_eq!(Some(value), want, "{:?}", input),
        Err(e) => {
            prop_assert!(
                want.is_none(),
                "{:?} rejected: {:?}, the rule says {:?}",
                input,
                e,
                want
            );
            must_be_400(&e, input)?;
        }
    }
    Ok(())
}

/// `got` is a 400 that names `field`.
pub fn must_be_400_naming<T: std::fmt::Debug>(
    got: Result<T, ApiError>,
    field: &str,
    input: &dyn std::fmt::Debug,
) -> Result<(), TestCaseError> {
    let e = match got {
        Ok(value) => {
            return Err(TestCaseError::fail(format!(
                "{input:?} accepted as {value:?}"
            )));
        }
        Err(e) => e,
    };
    must_be_400(&e, input)?;
    prop_assert!(
        matches!(&e, ApiError::Validation { field: f, .. } if *f == field),
        "{:?} for {:?}",
        e,
        input
    );
    Ok(())
}

pub fn as_strings(u: &NewUser) -> Expected {
    (
        u.first_name.as_ref().to_owned(),
        u.last_name.as_ref().to_owned(),
        u.email.as_ref().map(|e| e.as_ref().to_owned()),
    )
}

pub fn patch_strings(p: &UserPatch) -> ExpectedPatch {
    (
        p.first_name.as_ref().map(|n| n.as_ref().to_owned()),
        p.last_name.as_ref().map(|n| n.as_ref().to_owned()),
        p.email
            .as_ref()
            .map(|e| e.as_ref().map(|e| e.as_ref().to_owned())),
    )
}

/// `%XX` for every byte, in upper or lower case hex.
pub fn encode_all(s: &str, upper: bool) -> String {
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
pub fn encode_min(s: &str) -> String {
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

pub fn encode(s: &str, how: u8) -> String {
    match how % 3 {
        0 => encode_min(s),
        1 => encode_all(s, true),
        _ => encode_all(s, false),
    }
}

/// A JSON string literal whose every UTF-16 unit is spelled `\uXXXX`: the same key as
/// `serde_json::to_string(s)`, written differently.
pub fn escaped_key(s: &str) -> String {
    let units: String = s.encode_utf16().map(|u| format!("\\u{u:04x}")).collect();
    format!("\"{units}\"")
}
