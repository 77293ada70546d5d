//! Routing: a pure function from method and path to an endpoint, with the route pattern
//! used as the metrics label, or the 404/405 decision and its `Allow` list.

use crate::http::Method;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    CreateUser,
    ListUsers,
    GetUser,
    ReplaceUser,
    PatchUser,
    DeleteUser,
    Health,
    Live,
    Metrics,
    OpenApi,
}

/// Route patterns: the only values the `route` metrics label takes.
pub const PATTERNS: [&str; 10] = [
    "/user",
    "/users",
    "/user/{id}",
    "/users/{id}",
    "/health",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/openapi.json",
    "unmatched",
];

/// The pattern label of a request that matched no path.
pub const UNMATCHED: usize = PATTERNS.len() - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `pattern` indexes [`PATTERNS`]; `id` is the raw `{id}` segment, not yet parsed.
    Found {
        endpoint: Endpoint,
        pattern: usize,
        id: Option<&'a str>,
    },
    MethodNotAllowed {
        pattern: usize,
        allow: &'static str,
    },
    NotFound,
}

impl Route<'_> {
    pub fn pattern(&self) -> usize {
        match self {
            Route::Found { pattern, .. } | Route::MethodNotAllowed { pattern, .. } => *pattern,
            Route::NotFound => UNMATCHED,
        }
    }
}

/// Paths that need the bearer token when one is configured.
pub fn is_protected(path: &str) -> bool {
    ["/user", "/users"].iter().any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

pub fn route<'a>(method: &Method, path: &'a str) -> Route<'a> {
    use Endpoint::*;
    let read = matches!(method, Method::Get | Method::Head);
    let (pattern, id) = match path {
        "/user" => (0, None),
        "/users" => (1, None),
        "/health" => (4, None),
        "/health/live" => (5, None),
        "/health/ready" => (6, None),
        "/metrics" => (7, None),
        "/openapi.json" => (8, None),
        _ => match id_segment(path) {
            Some((pattern, id)) => (pattern, Some(id)),
            None => return Route::NotFound,
        },
    };
    let endpoint = match (pattern, method) {
        (0, Method::Post) | (1, Method::Post) => Some(CreateUser),
        (1, _) if read => Some(ListUsers),
        (2 | 3, _) if read => Some(GetUser),
        (2 | 3, Method::Put) => Some(ReplaceUser),
        (2 | 3, Method::Patch) => Some(PatchUser),
        (2 | 3, Method::Delete) => Some(DeleteUser),
        (4 | 6, _) if read => Some(Health),
        (5, _) if read => Some(Live),
        (7, _) if read => Some(Metrics),
        (8, _) if read => Some(OpenApi),
        _ => None,
    };
    match endpoint {
        Some(endpoint) => Route::Found {
            endpoint,
            pattern,
            id,
        },
        None => Route::MethodNotAllowed {
            pattern,
            allow: allow(pattern),
        },
    }
}

fn allow(pattern: usize) -> &'static str {
    match pattern {
        0 => "POST",
        1 => "GET, HEAD, POST",
        2 | 3 => "GET, HEAD, PUT, PATCH, DELETE",
        _ => "GET, HEAD",
    }
}

/// `/user/{id}` or `/users/{id}` with a non-empty segment and nothing after it.
fn id_segment(path: &str) -> Option<(usize, &str)> {
    let (pattern, rest) = if let Some(rest) = path.strip_prefix("/user/") {
        (2, rest)
    } else {
        (3, path.strip_prefix("/users/")?)
    };
    (!rest.is_empty() && !rest.contains('/')).then_some((pattern, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Endpoint::*;

    fn found(m: Method, path: &str) -> (Endpoint, &'static str, Option<&str>) {
        match route(&m, path) {
            Route::Found {
                endpoint,
                pattern,
                id,
            } => (endpoint, PATTERNS[pattern], id),
            other => panic!("{m} {path}: {other:?}"),
        }
    }

    #[test]
    fn route_finds_every_endpoint_and_alias() {
        assert_eq!(found(Method::Post, "/user"), (CreateUser, "/user", None));
        assert_eq!(found(Method::Post, "/users"), (CreateUser, "/users", None));
        assert_eq!(found(Method::Get, "/users"), (ListUsers, "/users", None));
        assert_eq!(found(Method::Head, "/users"), (ListUsers, "/users", None));
        assert_eq!(
            found(Method::Get, "/user/7"),
            (GetUser, "/user/{id}", Some("7"))
        );
        assert_eq!(
            found(Method::Get, "/users/x"),
            (GetUser, "/users/{id}", Some("x"))
        );
        assert_eq!(found(Method::Put, "/users/7").0, ReplaceUser);
        assert_eq!(found(Method::Patch, "/user/7").0, PatchUser);
        assert_eq!(found(Method::Delete, "/user/7").0, DeleteUser);
        assert_eq!(found(Method::Get, "/health"), (Health, "/health", None));
        assert_eq!(
            found(Method::Get, "/health/ready"),
            (Health, "/health/ready", None)
        );
        assert_eq!(found(Method::Head, "/health/live").0, Live);
        assert_eq!(found(Method::Get, "/metrics").0, Metrics);
        assert_eq!(found(Method::Get, "/openapi.json").0, OpenApi);
    }

    #[test]
    fn route_is_405_with_allow_when_method_does_not_fit() {
        let cases = [
            (Method::Get, "/user", "POST"),
            (Method::Delete, "/users", "GET, HEAD, POST"),
            (Method::Post, "/user/1", "GET, HEAD, PUT, PATCH, DELETE"),
            (Method::Options, "/health", "GET, HEAD"),
            (Method::Other("BREW".into()), "/metrics", "GET, HEAD"),
        ];
        for (m, path, want) in cases {
            match route(&m, path) {
                Route::MethodNotAllowed { allow, .. } => assert_eq!(allow, want, "{m} {path}"),
                other => panic!("{m} {path}: {other:?}"),
            }
        }
    }

    #[test]
    fn route_is_404_when_no_path_matches() {
        for path in [
            "/",
            "/user/",
            "/users/1/x",
            "/userx",
            "/health/",
            "/USERS",
            "//user",
        ] {
            assert_eq!(route(&Method::Get, path), Route::NotFound, "{path}");
        }
    }

    #[test]
    fn protected_paths_are_exactly_the_user_routes() {
        for p in ["/user", "/users", "/user/1", "/users/abc", "/user/"] {
            assert!(is_protected(p), "{p}");
        }
        for p in ["/health", "/metrics", "/openapi.json", "/userx", "/"] {
            assert!(!is_protected(p), "{p}");
        }
    }
}
