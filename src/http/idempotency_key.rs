//! `Idempotency-Key`: the client's name for one logical write, so that a retry of it is
//! answered with the first attempt's response instead of being applied again.

use super::{Rejection, Request};

/// 1 to 255 visible ASCII characters: safe to store, compare and log as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

const RULE: &str = "the Idempotency-Key header must be 1 to 255 visible ASCII characters";

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<IdempotencyKey, Rejection> {
        let ok = (1..=255).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(IdempotencyKey(raw.to_owned()))
        } else {
            Err(Rejection::BadRequest(RULE.into()))
        }
    }

    /// The request's key, if it sent one. Two keys are a 400: which one would count?
    pub fn from_request(req: &Request) -> Result<Option<IdempotencyKey>, Rejection> {
        let mut values = req
            .headers
            .iter()
            .filter(|(n, _)| n == "idempotency-key")
            .map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => IdempotencyKey::parse(v).map(Some),
            (Some(_), Some(_)) => Err(Rejection::BadRequest(
                "send at most one Idempotency-Key header".into(),
            )),
        }
    }
}

impl AsRef<str> for IdempotencyKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;

    #[test]
    fn visible_ascii_keys_of_1_to_255_characters_are_accepted() {
        for key in ["a", "3f1c-9a7e_order:42", "~!#$%&'*+^`|", &"k".repeat(255)] {
            assert_eq!(IdempotencyKey::parse(key).unwrap().as_ref(), key);
        }
    }

    #[test]
    fn empty_long_spaced_control_or_non_ascii_keys_are_400() {
        for key in ["", &"k".repeat(256), "a b", "a\tb", "clé", "a\u{7f}"] {
            let e = IdempotencyKey::parse(key).unwrap_err();
            assert_eq!(e.status(), 400, "{key:?}");
        }
    }

    #[test]
    fn a_request_with_two_keys_is_400() {
        let req = Request::new(Method::Post, "/user")
            .with_header("Idempotency-Key", "a")
            .with_header("Idempotency-Key", "b");
        assert_eq!(
            IdempotencyKey::from_request(&req).unwrap_err().status(),
            400
        );
        let req = Request::new(Method::Post, "/user");
        assert_eq!(IdempotencyKey::from_request(&req).unwrap(), None);
    }
}
