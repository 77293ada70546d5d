//! Authorisation of a request from its head alone: which scope the route needs, which
//! key the bearer secret belongs to, and whether that key has the scope.
//!
//! Which scope a route needs is the route table's ([`crate::router`]) to say;
//! [`authorize`] is a pure function of that scope, the `Authorization` value and the
//! key set, so it can run as soon as a request head is parsed, before a body is
//! read, and be tested without a socket.

use crate::error::ApiError;
use crate::keys::{Key, KeySet, Scope};

/// The outcome of [`authorize`].
#[derive(Debug)]
pub enum Access<'k> {
    /// The route needs no key, or no keys are configured.
    Open,
    /// A key with the scope the request needs.
    Granted(&'k Key),
    /// No bearer secret, or one that is no key's: 401.
    Unauthenticated,
    /// A known key without the scope the request needs: 403.
    Forbidden { key: &'k Key, needed: Scope },
}

impl<'k> Access<'k> {
    /// The key the request was made with, if it was made with a known one.
    pub fn key(&self) -> Option<&'k Key> {
        match self {
            Access::Granted(key) | Access::Forbidden { key, .. } => Some(key),
            Access::Open | Access::Unauthenticated => None,
        }
    }

    /// `Ok` when the request may go on, else the error to answer with.
    pub fn check(&self) -> Result<(), ApiError> {
        match self {
            Access::Open | Access::Granted(_) => Ok(()),
            Access::Unauthenticated => Err(ApiError::Unauthorized),
            Access::Forbidden { needed, .. } => Err(ApiError::Forbidden(needed.as_str())),
        }
    }
}

/// Decides a request from its head: `needed` is the scope its route asks for the method
/// ([`crate::router::Routed::scope`]), `None` on an open route; `keys` is `None` when no
/// keys are configured.
///
/// SECURITY: a missing header, another scheme and an unknown secret all take the same
/// path to 401, and the look-up ([`KeySet::find`]) neither reveals which names exist nor
/// takes a time that depends on how close the secret came to a real one.
pub fn authorize<'k>(
    needed: Option<Scope>,
    authorization: Option<&str>,
    keys: Option<&'k KeySet>,
) -> Access<'k> {
    let (Some(needed), Some(keys)) = (needed, keys) else {
        return Access::Open;
    };
    // No credentials at all never reach the look-up: whether a header was sent is the
    // client's own knowledge, and no key may stand for "nothing presented".
    let Some(presented) = authorization.and_then(bearer).filter(|s| !s.is_empty()) else {
        return Access::Unauthenticated;
    };
    match keys.find(presented) {
        None => Access::Unauthenticated,
        Some(key) if key.scopes().allows(needed) => Access::Granted(key),
        Some(key) => Access::Forbidden { key, needed },
    }
}

/// The credentials of `Bearer <secret>` (the scheme in any case, spaces around ignored).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;
    use crate::keys::file;
    use crate::keys::secret::{digest, format_hash};
    use crate::routes::ROUTES;

    fn keys() -> KeySet {
        let text = format!(
            "reader read {}\nwriter write {}\n",
            format_hash(&digest("r-secret")),
            format_hash(&digest("w-secret"))
        );
        file::parse(text.as_bytes()).unwrap()
    }

    fn decide<'k>(m: Method, path: &str, auth: Option<&str>, keys: &'k KeySet) -> Access<'k> {
        authorize(ROUTES.route(&m, path, None).scope(&m), auth, Some(keys))
    }

    #[test]
    fn a_read_key_may_read_but_not_write() {
        let k = keys();
        let read = Some("Bearer r-secret");
        for (m, path) in [(Method::Get, "/users"), (Method::Head, "/user/7")] {
            assert!(
                matches!(decide(m, path, read, &k), Access::Granted(key) if key.name() == "reader")
            );
        }
        for m in [
            Method::Post,
            Method::Put,
            Method::Patch,
            Method::Delete,
            Method::Options,
        ] {
            let a = decide(m.clone(), "/users/7", read, &k);
            assert!(
                matches!(
                    a,
                    Access::Forbidden {
                        needed: Scope::Write,
                        ..
                    }
                ),
                "{m}: {a:?}"
            );
            assert_eq!(a.check().unwrap_err().status(), 403);
            assert_eq!(a.key().map(Key::name), Some("reader"));
        }
    }

    #[test]
    fn a_write_key_may_do_everything() {
        let k = keys();
        for m in [Method::Get, Method::Post, Method::Delete, Method::Patch] {
            let a = decide(m.clone(), "/user/1", Some("bearer  w-secret "), &k);
            assert!(
                matches!(a, Access::Granted(key) if key.name() == "writer"),
                "{m}"
            );
        }
    }

    #[test]
    fn anything_but_a_known_bearer_secret_is_401() {
        let k = keys();
        for auth in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Bearer r-secre"),
            Some("Bearer r-secret2"),
            Some("Basic r-secret"),
            Some("r-secret"),
            Some("Bearer reader"),
        ] {
            let a = decide(Method::Get, "/users", auth, &k);
            assert!(matches!(a, Access::Unauthenticated), "{auth:?}: {a:?}");
            assert_eq!(a.check().unwrap_err().status(), 401);
            assert!(a.key().is_none());
        }
    }

    #[test]
    fn no_key_stands_for_an_empty_secret() {
        // A set built past the file parser (which refuses this hash) with the digest of "".
        let k = KeySet::new(vec![Key::new(
            "empty".into(),
            crate::keys::Scopes::ALL,
            digest(""),
        )]);
        for auth in [None, Some(""), Some("Bearer"), Some("Bearer   ")] {
            let a = decide(Method::Get, "/users", auth, &k);
            assert!(matches!(a, Access::Unauthenticated), "{auth:?}: {a:?}");
        }
    }

    #[test]
    fn open_routes_and_an_unconfigured_service_need_no_key() {
        let k = keys();
        for path in ["/health", "/metrics", "/openapi.json", "/userx"] {
            assert!(
                matches!(decide(Method::Get, path, None, &k), Access::Open),
                "{path}"
            );
        }
        assert!(matches!(
            authorize(Some(Scope::Write), None, None),
            Access::Open
        ));
    }

    #[test]
    fn the_api_token_is_one_key_with_every_scope() {
        let k = KeySet::from_token("legacy token");
        let a = decide(Method::Delete, "/user/1", Some("Bearer legacy token"), &k);
        assert!(matches!(a, Access::Granted(key) if key.name() == "api-token"));
        let a = decide(Method::Get, "/users", Some("Bearer legacy"), &k);
        assert!(matches!(a, Access::Unauthenticated));
    }
}
