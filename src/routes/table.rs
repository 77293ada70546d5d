//! The service's route table: every route it answers, each with its path, which method
//! runs which handler, who may call it, whether it is rate limited and which thread
//! answers it. The machinery that reads it is [`crate::router`]'s.

use super::{Handler, admin_file, health, meta, users};
use crate::http::Method::{Delete, Get, Head, Patch, Post, Put};
use crate::router::Auth::{Key, Open};
use crate::router::Lane::{Connection, Worker};
use crate::router::{Path, Route, Table};

/// `/user/{id}` and its alias `/users/{id}`.
const ONE_USER: &[(crate::http::Method, Handler)] = &[
    (Get, users::get),
    (Head, users::get),
    (Put, users::replace),
    (Patch, users::patch),
    (Delete, users::delete),
];

/// The routes. Their order is the order of the series in `/metrics` and the order a path
/// is tried in: the first route whose path matches wins, so a literal path (`/users/me`)
/// goes before a pattern that would also take it (`/users/{id}`).
pub static ROUTES: Table<Handler> = Table::new(&[
    Route {
        path: Path::api("/user"),
        methods: &[(Post, users::create)],
        auth: Key,
        limited: true,
        lane: Worker,
    },
    Route {
        path: Path::api("/users"),
        methods: &[
            (Get, users::list),
            (Head, users::list),
            (Post, users::create),
        ],
        auth: Key,
        limited: true,
        lane: Worker,
    },
    Route {
        path: Path::api("/user/{id}"),
        methods: ONE_USER,
        auth: Key,
        limited: true,
        lane: Worker,
    },
    Route {
        path: Path::api("/users/{id}"),
        methods: ONE_USER,
        auth: Key,
        limited: true,
        lane: Worker,
    },
    // Health probes and metrics scrapes are never limited: an orchestrator behind the
    // same address as a noisy client must still see the truth.
    Route {
        path: Path::api("/health"),
        methods: &[(Get, health::ready), (Head, health::ready)],
        auth: Open,
        limited: false,
        lane: Worker,
    },
    Route {
        path: Path::api("/health/live"),
        methods: &[(Get, health::live), (Head, health::live)],
        auth: Open,
        limited: false,
        lane: Connection,
    },
    Route {
        path: Path::api("/health/ready"),
        methods: &[(Get, health::ready), (Head, health::ready)],
        auth: Open,
        limited: false,
        lane: Worker,
    },
    Route {
        path: Path::api("/metrics"),
        methods: &[(Get, meta::metrics), (Head, meta::metrics)],
        auth: Open,
        limited: false,
        lane: Connection,
    },
    Route {
        path: Path::api("/openapi.json"),
        methods: &[(Get, meta::openapi), (Head, meta::openapi)],
        auth: Open,
        limited: true,
        lane: Worker,
    },
    // The admin console's static files: not part of the API, never authenticated.
    Route {
        path: Path::Admin,
        methods: &[(Get, admin_file), (Head, admin_file)],
        auth: Open,
        limited: true,
        lane: Connection,
    },
]);

#[cfg(test)]
mod tests {
    //! The table's own facts. Which handler a method runs is read off the table above
    //! and exercised end to end by the API tests: function pointers do not compare
    //! reliably, so these ask by path, method and label.

    use super::*;
    use crate::http::Method;
    use crate::keys::Scope;
    use crate::router::{AdminPath, Outcome};

    fn admin() -> AdminPath {
        AdminPath::parse("/admin", &ROUTES).unwrap()
    }

    fn label(i: usize) -> &'static str {
        ROUTES.labels()[i]
    }

    /// The label and capture of a request the table runs a handler for.
    fn found(m: Method, path: &str) -> (&'static str, &str) {
        let r = ROUTES.route(&m, path, Some(&admin()));
        match r.outcome() {
            Outcome::Found(_) => (label(r.label()), r.capture(path)),
            other => panic!("{m} {path}: {other:?}"),
        }
    }

    #[test]
    fn route_finds_every_endpoint_and_alias() {
        assert_eq!(found(Post, "/user"), ("/user", ""));
        assert_eq!(found(Post, "/users"), ("/users", ""));
        assert_eq!(found(Get, "/users"), ("/users", ""));
        assert_eq!(found(Head, "/users"), ("/users", ""));
        assert_eq!(found(Get, "/user/7"), ("/user/{id}", "7"));
        assert_eq!(found(Get, "/users/x"), ("/users/{id}", "x"));
        for m in [Get, Head, Put, Patch, Delete] {
            assert_eq!(found(m.clone(), "/users/7"), ("/users/{id}", "7"));
            assert_eq!(found(m, "/user/7"), ("/user/{id}", "7"));
        }
        assert_eq!(found(Get, "/health"), ("/health", ""));
        assert_eq!(found(Get, "/health/ready"), ("/health/ready", ""));
        assert_eq!(found(Head, "/health/live"), ("/health/live", ""));
        assert_eq!(found(Get, "/metrics"), ("/metrics", ""));
        assert_eq!(found(Get, "/openapi.json"), ("/openapi.json", ""));
        assert_eq!(found(Get, "/admin/admin.js"), ("admin", "/admin.js"));
    }

    #[test]
    fn route_is_405_with_allow_when_method_does_not_fit() {
        let cases = [
            (Get, "/user", "POST"),
            (Delete, "/users", "GET, HEAD, POST"),
            (Post, "/user/1", "GET, HEAD, PUT, PATCH, DELETE"),
            (Method::Options, "/health", "GET, HEAD"),
            (Method::Other("BREW".into()), "/metrics", "GET, HEAD"),
            (Post, "/admin/", "GET, HEAD"),
        ];
        for (m, path, want) in cases {
            match ROUTES.route(&m, path, Some(&admin())).outcome() {
                Outcome::MethodNotAllowed { allow } => assert_eq!(allow, want, "{m} {path}"),
                other => panic!("{m} {path}: {other:?}"),
            }
        }
    }

    #[test]
    fn route_is_404_when_no_path_matches() {
        for path in [
            "/",
            "",
            "/user/",
            "/users/1/x",
            "/userx",
            "/health/",
            "/USERS",
            "//user",
            "/admin/x",
        ] {
            let r = ROUTES.route(&Get, path, Some(&admin()));
            assert!(matches!(r.outcome(), Outcome::NotFound), "{path}");
            assert_eq!(label(r.label()), "unmatched", "{path}");
        }
    }

    #[test]
    fn admin_path_is_refused_over_an_api_route() {
        for bad in [
            "/users",
            "/user",
            "/users/admin",
            "/health",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(AdminPath::parse(bad, &ROUTES).is_err(), "{bad:?}");
        }
        assert!(AdminPath::parse("/healthz", &ROUTES).is_ok());
    }

    #[test]
    fn labels_are_the_api_patterns_then_admin_then_unmatched_each_once() {
        let labels = ROUTES.labels();
        assert_eq!(labels.len(), ROUTES.routes().len() + 1);
        assert_eq!(labels[ROUTES.unmatched()], "unmatched");
        assert_eq!(labels[ROUTES.unmatched() - 1], "admin");
        for (i, l) in labels.iter().enumerate() {
            assert!(!labels[..i].contains(l), "{l} twice");
        }
    }

    #[test]
    fn keys_guard_the_user_routes_and_every_path_under_them() {
        for p in [
            "/user",
            "/users",
            "/user/1",
            "/users/abc",
            "/user/",
            "/users/1/x",
        ] {
            let r = ROUTES.route(&Get, p, None);
            assert_eq!(r.scope(&Get), Some(Scope::Read), "{p}");
            let r = ROUTES.route(&Method::Options, p, None);
            assert_eq!(r.scope(&Method::Options), Some(Scope::Write), "{p}");
        }
        for p in [
            "/health",
            "/metrics",
            "/openapi.json",
            "/userx",
            "/",
            "//user",
        ] {
            assert_eq!(ROUTES.route(&Post, p, None).scope(&Post), None, "{p}");
        }
    }

    #[test]
    fn only_liveness_metrics_and_the_console_take_the_fast_lane() {
        let a = admin();
        let fast: Vec<&str> = [
            "/user",
            "/users",
            "/user/1",
            "/users/1",
            "/health",
            "/health/live",
            "/health/ready",
            "/metrics",
            "/openapi.json",
            "/admin/",
            "/nowhere",
        ]
        .into_iter()
        .filter(|p| ROUTES.route(&Get, p, Some(&a)).is_immediate())
        .collect();
        assert_eq!(fast, ["/health/live", "/metrics", "/admin/"]);
        assert!(
            !ROUTES.route(&Post, "/metrics", None).is_immediate(),
            "a 405 waits"
        );
    }

    #[test]
    fn health_and_metrics_are_spared_the_rate_limit() {
        let a = admin();
        for (p, limited) in [
            ("/users", true),
            ("/user/1", true),
            ("/openapi.json", true),
            ("/admin", true),
            ("/nowhere", true),
            ("/health", false),
            ("/health/live", false),
            ("/health/ready", false),
            ("/metrics", false),
        ] {
            for m in [Get, Post] {
                let r = ROUTES.route(&m, p, Some(&a));
                assert_eq!(r.is_limited(), limited, "{m} {p}");
            }
        }
    }

    #[test]
    fn every_route_is_reached_by_its_own_path_so_none_shadows_another() {
        let a = admin();
        let labels = ROUTES.labels();
        for (i, r) in ROUTES.routes().iter().enumerate() {
            let path = match r.path {
                Path::Api(pattern) => pattern.text.replace("{id}", "1"),
                Path::Admin => "/admin/".to_owned(),
            };
            let found = ROUTES.route(&r.methods[0].0, &path, Some(&a));
            assert_eq!(labels[found.label()], labels[i], "{path}");
            assert_eq!(found.label(), i, "{path}");
        }
    }
}
