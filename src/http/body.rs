//! Request bodies: the `Content-Type` check and parsing a JSON object whose keys are
//! unique. Validation of the fields themselves belongs to the domain types.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, de::IgnoredAny};
use serde_json::{Map, Value};

use super::{Body, Rejection, Request};

/// A JSON object with no repeated key, as the body of a POST, PUT or PATCH.
pub type JsonObject = Map<String, Value>;

/// Checks the media type, the size and the syntax of a body, and returns its top-level
/// object. Rejects duplicate keys: `{"email": "a@b.c", "email": null}` is ambiguous.
pub fn json_object(req: &Request, max_body_bytes: usize) -> Result<JsonObject, Rejection> {
    let bytes = match &req.body {
        Body::TooLarge => {
            return Err(Rejection::PayloadTooLarge {
                limit: max_body_bytes,
            });
        }
        Body::Complete(b) => b,
    };
    if !is_json_media_type(req.header("content-type")) {
        return Err(Rejection::UnsupportedMediaType);
    }
    parse_object(bytes)
}

/// `application/json`, optionally with `charset=utf-8`; any other charset is refused
/// since JSON is UTF-8 on the wire.
pub fn is_json_media_type(value: Option<&str>) -> bool {
    let Some(value) = value else { return false };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return false;
    }
    parts.all(|p| match p.split_once('=') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
            v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        }
        _ => p.trim().is_empty(),
    })
}

fn parse_object(bytes: &[u8]) -> Result<JsonObject, Rejection> {
    match serde_json::from_slice::<UniqueKeys>(bytes) {
        Ok(UniqueKeys(map)) => Ok(map),
        Err(e) if e.is_data() => {
            let msg = e.to_string();
            if msg.starts_with(DUPLICATE) {
                // The message is ours (see the visitor): strip serde's position suffix.
                let msg = msg.split(" at line ").next().unwrap_or(&msg);
                Err(Rejection::BadRequest(msg.to_owned()))
            } else {
                Err(Rejection::BadRequest(
                    "the request body must be a JSON object".into(),
                ))
            }
        }
        Err(e) if bytes.iter().all(u8::is_ascii_whitespace) => {
            drop(e);
            Err(Rejection::BadRequest("the request body is empty".into()))
        }
        Err(e) => {
            // A valid JSON value that is not an object is a type error, not a syntax one.
            if serde_json::from_slice::<IgnoredAny>(bytes).is_ok() {
                return Err(Rejection::BadRequest(
                    "the request body must be a JSON object".into(),
                ));
            }
            Err(Rejection::BadRequest(format!(
                "the request body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            )))
        }
    }
}

const DUPLICATE: &str = "duplicate key";

struct UniqueKeys(JsonObject);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueKeys, A::Error> {
                let mut map = Map::new();
                while let Some(key) = access.next_key::<String>()? {
                    if map.contains_key(&key) {
                        return Err(de::Error::custom(format!(
                            "{DUPLICATE} \"{}\" in the request body",
                            key.escape_default()
                        )));
                    }
                    let value: Value = access.next_value()?;
                    map.insert(key, value);
                }
                Ok(UniqueKeys(map))
            }
        }
        d.deserialize_map(ObjectVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;

    fn post(ct: Option<&str>, body: &str) -> Request {
        let r = Request::new(Method::Post, "/user").with_body(body);
        match ct {
            Some(ct) => r.with_header("Content-Type", ct),
            None => r,
        }
    }

    fn err(ct: Option<&str>, body: &str) -> (u16, String) {
        let e = json_object(&post(ct, body), 100).unwrap_err();
        (e.status(), e.to_string())
    }

    #[test]
    fn media_type_accepts_json_with_or_without_utf8_charset() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(is_json_media_type(Some(ok)), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/json-patch+json",
            "application/json; charset=latin1",
            "application/jsonx",
            "",
        ] {
            assert!(!is_json_media_type(Some(bad)), "{bad}");
        }
        assert!(!is_json_media_type(None));
    }

    #[test]
    fn body_is_rejected_with_415_when_content_type_is_missing_or_wrong() {
        assert_eq!(err(None, "{}").0, 415);
        assert_eq!(err(Some("text/plain"), "{}").0, 415);
    }

    #[test]
    fn body_is_rejected_with_413_when_it_was_too_large() {
        let mut r = post(Some("application/json"), "");
        r.body = Body::TooLarge;
        assert_eq!(json_object(&r, 100).unwrap_err().status(), 413);
    }

    #[test]
    fn body_errors_are_400_with_a_clear_sentence() {
        let ct = Some("application/json");
        let cases = [
            ("{", "not valid JSON"),
            ("", "empty"),
            ("[1,2]", "must be a JSON object"),
            ("\"x\"", "must be a JSON object"),
            ("{\"a\":1,\"a\":2}", "duplicate key \"a\""),
            ("{} {}", "not valid JSON"),
        ];
        for (body, want) in cases {
            let (status, msg) = err(ct, body);
            assert_eq!(status, 400, "{body}");
            assert!(msg.contains(want), "{body}: {msg}");
        }
    }

    #[test]
    fn body_with_invalid_utf8_or_deep_nesting_is_400() {
        let mut r = post(Some("application/json"), "");
        r.body = Body::Complete(b"{\"a\":\"\xff\"}".to_vec());
        assert_eq!(json_object(&r, 1 << 20).unwrap_err().status(), 400);
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        let r = post(Some("application/json"), &deep);
        assert_eq!(json_object(&r, 1 << 20).unwrap_err().status(), 400);
    }

    #[test]
    fn body_object_is_returned_when_valid() {
        let obj = json_object(&post(Some("application/json"), "{\"a\": null}"), 100).unwrap();
        assert_eq!(obj.get("a"), Some(&Value::Null));
    }
}
