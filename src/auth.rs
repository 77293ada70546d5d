//! Bearer-token authentication, compared in constant time.

use crate::config::Secret;
use crate::error::ApiError;
use crate::http::Request;

/// Checks `Authorization: Bearer <token>`. A missing header and a wrong token take the
/// same path and give the same answer.
pub fn check(req: &Request, token: &Secret) -> Result<(), ApiError> {
    let given = req
        .header("authorization")
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Compares without an early exit, so the time taken says nothing about how many leading
/// bytes matched. The length is compared too, but only the token's length leaks.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, &y) in b.iter().enumerate() {
        // Index `a` cyclically so the loop always runs over the whole secret.
        let x = if a.is_empty() { 0 } else { a[i % a.len()] };
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::http::Method;

    fn secret(t: &str) -> Secret {
        let t = t.to_owned();
        Config::from_lookup(move |k| match k {
            "DB_NAME" | "DB_USER" => Some("x".into()),
            "API_TOKEN" => Some(t.clone()),
            _ => None,
        })
        .unwrap()
        .api_token
        .unwrap()
    }

    fn req(auth: Option<&str>) -> Request {
        let r = Request::new(Method::Get, "/users");
        match auth {
            Some(a) => r.with_header("Authorization", a),
            None => r,
        }
    }

    #[test]
    fn token_is_accepted_when_it_matches() {
        let s = secret("s3cret-token");
        assert!(check(&req(Some("Bearer s3cret-token")), &s).is_ok());
        assert!(check(&req(Some("bearer  s3cret-token ")), &s).is_ok());
    }

    #[test]
    fn token_is_401_when_missing_wrong_or_another_scheme() {
        let s = secret("s3cret-token");
        for a in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer s3cret-toke"),
            Some("Bearer s3cret-token2"),
            Some("Basic s3cret-token"),
            Some("s3cret-token"),
        ] {
            assert_eq!(check(&req(a), &s).unwrap_err().status(), 401, "{a:?}");
        }
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abcabc", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
    }
}
