//! Routing: a pure function from method and path to an endpoint, with the route pattern
//! used as the metrics label, or the 404/405 decision and its `Allow` list. The admin
//! console is the one route whose path is a setting ([`AdminPath`]).

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
    /// The admin console's static files: not part of the API, never authenticated.
    Admin(AdminAsset),
}

/// The files of the admin console under its [`AdminPath`] `P`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminAsset {
    /// `P` itself: a redirect to `P/`, so the page's relative links resolve under `P`.
    Redirect,
    /// `P/`: the page.
    Page,
    /// `P/admin.js`.
    Script,
    /// `P/admin.css`.
    Style,
}

/// Route patterns: the only values the `route` metrics label takes. The API's routes come
/// first (`PATTERNS[..UNMATCHED]`, what `openapi.json` documents), then `unmatched`, then
/// the admin console, labelled `admin` whatever its path.
pub const PATTERNS: [&str; 11] = [
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
    "admin",
];

/// The pattern label of a request that matched no path.
pub const UNMATCHED: usize = PATTERNS.len() - 2;

/// The pattern label of the admin console's files.
pub const ADMIN: usize = PATTERNS.len() - 1;

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

/// Where the admin console is served: a path that no API route, and nothing under
/// `/user` or `/users`, can also claim. Built only through [`AdminPath::parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminPath(String);

impl AdminPath {
    /// `/` and one or more segments of `[A-Za-z0-9._~-]`, without a trailing `/`.
    pub fn parse(s: &str) -> Result<AdminPath, String> {
        let segments_ok = s.strip_prefix('/').is_some_and(|rest| {
            rest.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
            })
        });
        if !segments_ok {
            return Err(format!(
                "{s:?} is not a path like /admin (segments of letters, digits and ._~-, no trailing /)"
            ));
        }
        let path = AdminPath(s.to_owned());
        // SECURITY: the console is served without authentication, so it must never
        // shadow an API route or sit under the protected paths.
        for file in ["", "/", "/admin.js", "/admin.css"] {
            let p = format!("{s}{file}");
            if is_protected(&p) || route(&Method::Get, &p) != Route::NotFound {
                return Err(format!("{s:?} overlaps the API's own routes"));
            }
        }
        Ok(path)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Which of the console's files `path` names, if any.
    fn asset(&self, path: &str) -> Option<AdminAsset> {
        match path.strip_prefix(self.0.as_str())? {
            "" => Some(AdminAsset::Redirect),
            "/" => Some(AdminAsset::Page),
            "/admin.js" => Some(AdminAsset::Script),
            "/admin.css" => Some(AdminAsset::Style),
            _ => None,
        }
    }
}

/// As [`route`], with the admin console's files at `admin` when it is served.
pub fn route_with_admin<'a>(
    method: &Method,
    path: &'a str,
    admin: Option<&AdminPath>,
) -> Route<'a> {
    let Some(asset) = admin.and_then(|a| a.asset(path)) else {
        return route(method, path);
    };
    if matches!(method, Method::Get | Method::Head) {
        Route::Found {
            endpoint: Endpoint::Admin(asset),
            pattern: ADMIN,
            id: None,
        }
    } else {
        Route::MethodNotAllowed {
            pattern: ADMIN,
            allow: "GET, HEAD",
        }
    }
}

/// The API's routes (everything but the admin console).
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

    fn admin() -> AdminPath {
        AdminPath::parse("/admin").unwrap()
    }

    #[test]
    fn route_with_admin_finds_the_console_files_under_its_path() {
        let a = admin();
        let cases = [
            ("/admin", AdminAsset::Redirect),
            ("/admin/", AdminAsset::Page),
            ("/admin/admin.js", AdminAsset::Script),
            ("/admin/admin.css", AdminAsset::Style),
        ];
        for (path, asset) in cases {
            for m in [Method::Get, Method::Head] {
                let r = route_with_admin(&m, path, Some(&a));
                assert_eq!(
                    r,
                    Route::Found {
                        endpoint: Admin(asset),
                        pattern: ADMIN,
                        id: None
                    },
                    "{m} {path}"
                );
            }
            match route_with_admin(&Method::Post, path, Some(&a)) {
                Route::MethodNotAllowed { allow, pattern } => {
                    assert_eq!((allow, pattern), ("GET, HEAD", ADMIN), "{path}")
                }
                other => panic!("POST {path}: {other:?}"),
            }
        }
        for path in ["/admin/x", "/admin//", "/adminx", "/admin/admin.js/"] {
            assert_eq!(
                route_with_admin(&Method::Get, path, Some(&a)),
                Route::NotFound
            );
        }
        assert_eq!(
            route_with_admin(&Method::Get, "/users", Some(&a)),
            route(&Method::Get, "/users")
        );
    }

    #[test]
    fn route_with_admin_is_404_everywhere_when_the_console_is_off() {
        for path in ["/admin", "/admin/", "/admin/admin.js", "/admin/admin.css"] {
            for m in [Method::Get, Method::Post] {
                assert_eq!(route_with_admin(&m, path, None), Route::NotFound, "{path}");
            }
        }
    }

    #[test]
    fn admin_path_is_refused_when_malformed_or_over_an_api_route() {
        for ok in ["/admin", "/ops/console", "/_admin-1.x~"] {
            assert_eq!(AdminPath::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "/",
            "admin",
            "/admin/",
            "//admin",
            "/a b",
            "/a/../b",
            "/a/./b",
            "/ad?min",
            "/ad%20min",
            "/users",
            "/user",
            "/users/admin",
            "/health",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(AdminPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn admin_pattern_is_not_among_the_api_patterns() {
        assert_eq!(PATTERNS[UNMATCHED], "unmatched");
        assert_eq!(PATTERNS[ADMIN], "admin");
        assert!(!PATTERNS[..UNMATCHED].contains(&"admin"));
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
