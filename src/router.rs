//! The route table: every route the service answers, each declaring its path, which
//! method runs which endpoint, who may call it, whether it is rate limited, which thread
//! answers it and its metrics label. `Allow` and 405, authorisation, rate limiting, the
//! fast lane, `/metrics` and the OpenAPI check all read [`ROUTES`]; nothing else knows a
//! path. [`route`] looks a request up once, and the [`Routed`] it returns travels with
//! the request (as an [`http::Note`](crate::http::Note)) from the connection layer's
//! thread to the worker.
//!
//! Adding an endpoint: a row here (or a method on a row), its handler in `routes/`, its
//! test, and the contract (docs/API.md, src/openapi.json).

use std::ops::Range;
use std::sync::OnceLock;

use crate::http::{Method, Note};
use crate::keys::Scope;

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
    /// The admin console's static files: not part of the API, never authenticated. Which
    /// file is the path's capture ([`AdminAsset::parse`]).
    Admin,
}

/// One route: everything the service decides about a request from its path alone.
#[derive(Debug)]
pub struct Route {
    pub path: Path,
    /// The methods the route takes, in the order `Allow` lists them, and what each runs.
    pub methods: &'static [(Method, Endpoint)],
    pub auth: Auth,
    /// Counted against the client's rate limit (when one is set).
    pub limited: bool,
    pub lane: Lane,
}

/// What a route's path matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// A path of the API (made by [`Path::api`]), `{id}` standing for one non-empty
    /// segment (captured). It is also the route's metrics label and its key in
    /// `openapi.json`.
    Api(Pattern),
    /// The admin console's files under [`AdminPath`], when it is served; labelled `admin`
    /// whatever the path. The part after the [`AdminPath`] is captured.
    Admin,
}

/// A path pattern with at most one `{id}`, whose place is found once, at compile time:
/// a request is tried against every route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pattern {
    pub text: &'static str,
    /// Where `{id}` starts, if the pattern has one.
    id_at: Option<usize>,
}

impl Path {
    pub const fn api(text: &'static str) -> Path {
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() && bytes[i] != b'{' {
            i += 1;
        }
        let id_at = if i < bytes.len() { Some(i) } else { None };
        Path::Api(Pattern { text, id_at })
    }
}

/// Who may call a route when API keys are configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Anyone.
    Open,
    /// A key with the scope the method needs: reads (GET, HEAD) `read`, anything else
    /// (a 405 included) `write`.
    Key,
}

/// Which thread answers a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// A worker: anything that may wait (the database).
    Worker,
    /// The connection layer's own thread, without queueing: only for endpoints that touch
    /// nothing that can wait (atomics, the pool's counts, static bytes), so that they
    /// answer while every worker waits on a database that hangs. API.md keeps liveness
    /// and metrics at 200 during an outage; the console's page loads (and can say the
    /// database is down) then too.
    Connection,
}

use Auth::{Key, Open};
use Endpoint::*;
use Lane::{Connection, Worker};
use Method::{Delete, Get, Head, Patch, Post, Put};

/// `/user/{id}` and its alias `/users/{id}`.
const ONE_USER: &[(Method, Endpoint)] = &[
    (Get, GetUser),
    (Head, GetUser),
    (Put, ReplaceUser),
    (Patch, PatchUser),
    (Delete, DeleteUser),
];

/// The routes. Their order is the order of the series in `/metrics` and the order a path
/// is tried in: the first route whose path matches wins, so a literal path (`/users/me`)
/// goes before a pattern that would also take it (`/users/{id}`).
pub const ROUTES: &[Route] = &[
    Route {
        path: Path::api("/user"),
        methods: &[(Post, CreateUser)],
        auth: Key,
        limited: true,
        lane: Worker,
    },
    Route {
        path: Path::api("/users"),
        methods: &[(Get, ListUsers), (Head, ListUsers), (Post, CreateUser)],
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
        methods: &[(Get, Health), (Head, Health)],
        auth: Open,
        limited: false,
        lane: Worker,
    },
    Route {
        path: Path::api("/health/live"),
        methods: &[(Get, Live), (Head, Live)],
        auth: Open,
        limited: false,
        lane: Connection,
    },
    Route {
        path: Path::api("/health/ready"),
        methods: &[(Get, Health), (Head, Health)],
        auth: Open,
        limited: false,
        lane: Worker,
    },
    Route {
        path: Path::api("/metrics"),
        methods: &[(Get, Metrics), (Head, Metrics)],
        auth: Open,
        limited: false,
        lane: Connection,
    },
    Route {
        path: Path::api("/openapi.json"),
        methods: &[(Get, OpenApi), (Head, OpenApi)],
        auth: Open,
        limited: true,
        lane: Worker,
    },
    Route {
        path: Path::Admin,
        methods: &[(Get, Admin), (Head, Admin)],
        auth: Open,
        limited: true,
        lane: Connection,
    },
];

// A route's index fits the byte a [`Note`] keeps it in, `0xff` meaning none.
const _: () = assert!(ROUTES.len() < 0xff);

/// Metrics labels: one per route ([`Route::label`]), then `unmatched`.
pub const LABELS: usize = ROUTES.len() + 1;

/// The label of a request that matched no path.
pub const UNMATCHED: usize = ROUTES.len();

/// The metrics label with index `i` (see [`Routed::label`]).
pub fn label(i: usize) -> &'static str {
    ROUTES.get(i).map_or("unmatched", Route::label)
}

impl Route {
    /// The `route` label of its requests in `/metrics`.
    pub fn label(&self) -> &'static str {
        match self.path {
            Path::Api(pattern) => pattern.text,
            Path::Admin => "admin",
        }
    }

    /// Where `path` captures, if it names this route.
    fn matches(&self, path: &str, admin: Option<&AdminPath>) -> Option<Range<usize>> {
        match self.path {
            Path::Api(pattern) => match_pattern(pattern, path),
            Path::Admin => {
                let prefix = admin?.as_str();
                AdminAsset::parse(path.strip_prefix(prefix)?)?;
                Some(prefix.len()..path.len())
            }
        }
    }

    /// The first segment of its path: a path that matches no route but shares it falls
    /// under that route's [`Auth`].
    fn area(&self) -> Option<&'static str> {
        match self.path {
            Path::Api(pattern) => Some(first_segment(pattern.text)),
            Path::Admin => None,
        }
    }
}

/// `/a/{id}/b` against a path: the literal parts as they are, `{id}` one non-empty
/// segment. Returns where the captured segment lies (an empty range when there is none).
/// Byte comparisons only: this runs for every route a request is tried against, and
/// `str::split` cost twenty times more.
fn match_pattern(pattern: Pattern, path: &str) -> Option<Range<usize>> {
    let Some(at) = pattern.id_at else {
        return (pattern.text == path).then_some(0..0);
    };
    let (before, after) = pattern.text.split_at(at);
    let after = after.strip_prefix("{id}")?;
    let rest = path.strip_prefix(before)?;
    let len = rest.bytes().position(|b| b == b'/').unwrap_or(rest.len());
    (len > 0 && &rest[len..] == after).then(|| before.len()..before.len() + len)
}

/// `users` of `/users/1`; empty for `//x` or a path without its leading `/`.
fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or("");
    &rest[..rest.bytes().position(|b| b == b'/').unwrap_or(rest.len())]
}

/// What [`route`] found for a request: small and `Copy`, so it travels with the request
/// from its head to the worker that answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Routed {
    /// Index in [`ROUTES`] of the route whose path matched; `None` when none did.
    route: Option<u8>,
    /// Index in that route's methods of the request's method; `None`: 405.
    method: Option<u8>,
    /// Where in the path the route's capture lies (`{id}`, the console's file).
    capture: (u32, u32),
    /// The matched route's, or for an unmatched path the strictest of its area's.
    auth: Auth,
}

/// What a request amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Found(Endpoint),
    /// 405, with the `Allow` list.
    MethodNotAllowed {
        allow: &'static str,
    },
    NotFound,
}

/// Looks a request up in [`ROUTES`], with the console's files at `admin` when it is served.
pub fn route(method: &Method, path: &str, admin: Option<&AdminPath>) -> Routed {
    for (i, r) in ROUTES.iter().enumerate() {
        let Some(capture) = r.matches(path, admin) else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u32::try_from(capture.start), u32::try_from(capture.end))
        else {
            break;
        };
        return Routed {
            route: u8::try_from(i).ok(),
            method: r
                .methods
                .iter()
                .position(|(m, _)| m == method)
                .and_then(|m| u8::try_from(m).ok()),
            capture: (start, end),
            auth: r.auth,
        };
    }
    // SECURITY: a path under a keyed route's first segment (`/users/1/x`) is refused to
    // an anonymous client like the route itself, so nobody learns which paths exist.
    let area = first_segment(path);
    let keyed = ROUTES
        .iter()
        .any(|r| r.auth == Key && r.area() == Some(area));
    Routed {
        route: None,
        method: None,
        capture: (0, 0),
        auth: if keyed { Key } else { Open },
    }
}

impl Routed {
    fn row(&self) -> Option<&'static Route> {
        ROUTES.get(usize::from(self.route?))
    }

    pub fn outcome(&self) -> Outcome {
        let Some(row) = self.row() else {
            return Outcome::NotFound;
        };
        match self.method.and_then(|m| row.methods.get(usize::from(m))) {
            Some((_, endpoint)) => Outcome::Found(*endpoint),
            None => Outcome::MethodNotAllowed {
                allow: allow(usize::from(self.route.unwrap_or(0))),
            },
        }
    }

    /// The index of its metrics label ([`label`]).
    pub fn label(&self) -> usize {
        self.route.map_or(UNMATCHED, usize::from)
    }

    /// The part of `path` (the one it was routed by) the route captures: the raw `{id}`
    /// segment, not yet parsed, or the console's file after its path.
    pub fn capture<'a>(&self, path: &'a str) -> &'a str {
        let (start, end) = self.capture;
        path.get(start as usize..end as usize).unwrap_or("")
    }

    /// The scope a key needs to make this request, `None` when anyone may.
    pub fn scope(&self, method: &Method) -> Option<Scope> {
        match self.auth {
            Open => None,
            Key if matches!(method, Get | Head) => Some(Scope::Read),
            Key => Some(Scope::Write),
        }
    }

    /// Whether the request counts against its client's rate limit; one that matched no
    /// route does.
    pub fn is_limited(&self) -> bool {
        self.row().is_none_or(|r| r.limited)
    }

    /// Whether the connection layer's thread answers it ([`Lane::Connection`]); a 404 or
    /// 405 never is.
    pub fn is_immediate(&self) -> bool {
        matches!(self.outcome(), Outcome::Found(_))
            && self.row().is_some_and(|r| r.lane == Connection)
    }

    /// Packs it into the connection layer's opaque [`Note`]: the route in bits 0–7, the
    /// method in 8–15 (`0xff`: none), `Auth::Key` in bit 16, the capture in 17–39 and
    /// 40–62 (heads are at most 1 MiB, so 23 bits hold any offset).
    pub fn to_note(self) -> Option<Note> {
        let (start, end) = self.capture;
        if start >= 1 << 23 || end >= 1 << 23 {
            return None;
        }
        let route = self.route.map_or(0xff, u64::from);
        let method = self.method.map_or(0xff, u64::from);
        let key = u64::from(self.auth == Key);
        Some(Note(
            route | method << 8 | key << 16 | u64::from(start) << 17 | u64::from(end) << 40,
        ))
    }

    /// The inverse of [`to_note`](Self::to_note).
    pub fn from_note(note: Note) -> Routed {
        let byte = |shift: u32| {
            let b = (note.0 >> shift) as u8;
            (b != 0xff).then_some(b)
        };
        let offset = |shift: u32| ((note.0 >> shift) & ((1 << 23) - 1)) as u32;
        Routed {
            route: byte(0),
            method: byte(8),
            capture: (offset(17), offset(40)),
            auth: if note.0 & 1 << 16 != 0 { Key } else { Open },
        }
    }
}

/// The `Allow` list of route `i`: its methods in table order.
fn allow(i: usize) -> &'static str {
    static ALLOW: OnceLock<Vec<String>> = OnceLock::new();
    let lists = ALLOW.get_or_init(|| {
        ROUTES
            .iter()
            .map(|r| {
                let names: Vec<&str> = r.methods.iter().map(|(m, _)| m.as_str()).collect();
                names.join(", ")
            })
            .collect()
    });
    lists.get(i).map_or("", String::as_str)
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

impl AdminAsset {
    /// Which file the rest of a path after the console's [`AdminPath`] names, if any.
    pub fn parse(rest: &str) -> Option<AdminAsset> {
        match rest {
            "" => Some(AdminAsset::Redirect),
            "/" => Some(AdminAsset::Page),
            "/admin.js" => Some(AdminAsset::Script),
            "/admin.css" => Some(AdminAsset::Style),
            _ => None,
        }
    }
}

/// Where the admin console is served: a path that no API route, and nothing under a
/// keyed route's first segment, can also claim. Built only through [`AdminPath::parse`].
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
        // SECURITY: the console is served without authentication, so it must never
        // shadow an API route or sit under the keyed paths.
        for file in ["", "/", "/admin.js", "/admin.css"] {
            let r = route(&Get, &format!("{s}{file}"), None);
            if r.route.is_some() || r.auth != Open {
                return Err(format!("{s:?} overlaps the API's own routes"));
            }
        }
        Ok(AdminPath(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(m: Method, path: &str) -> (Endpoint, &'static str, &str) {
        let r = route(&m, path, None);
        match r.outcome() {
            Outcome::Found(endpoint) => (endpoint, label(r.label()), r.capture(path)),
            other => panic!("{m} {path}: {other:?}"),
        }
    }

    #[test]
    fn route_finds_every_endpoint_and_alias() {
        assert_eq!(found(Post, "/user"), (CreateUser, "/user", ""));
        assert_eq!(found(Post, "/users"), (CreateUser, "/users", ""));
        assert_eq!(found(Get, "/users"), (ListUsers, "/users", ""));
        assert_eq!(found(Head, "/users"), (ListUsers, "/users", ""));
        assert_eq!(found(Get, "/user/7"), (GetUser, "/user/{id}", "7"));
        assert_eq!(found(Get, "/users/x"), (GetUser, "/users/{id}", "x"));
        assert_eq!(found(Put, "/users/7").0, ReplaceUser);
        assert_eq!(found(Patch, "/user/7").0, PatchUser);
        assert_eq!(found(Delete, "/user/7").0, DeleteUser);
        assert_eq!(found(Get, "/health"), (Health, "/health", ""));
        assert_eq!(found(Get, "/health/ready"), (Health, "/health/ready", ""));
        assert_eq!(found(Head, "/health/live").0, Live);
        assert_eq!(found(Get, "/metrics").0, Metrics);
        assert_eq!(found(Get, "/openapi.json").0, OpenApi);
    }

    #[test]
    fn route_is_405_with_allow_when_method_does_not_fit() {
        let cases = [
            (Get, "/user", "POST"),
            (Delete, "/users", "GET, HEAD, POST"),
            (Post, "/user/1", "GET, HEAD, PUT, PATCH, DELETE"),
            (Method::Options, "/health", "GET, HEAD"),
            (Method::Other("BREW".into()), "/metrics", "GET, HEAD"),
        ];
        for (m, path, want) in cases {
            match route(&m, path, None).outcome() {
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
        ] {
            let r = route(&Get, path, None);
            assert_eq!(r.outcome(), Outcome::NotFound, "{path}");
            assert_eq!(label(r.label()), "unmatched", "{path}");
        }
    }

    fn admin() -> AdminPath {
        AdminPath::parse("/admin").unwrap()
    }

    #[test]
    fn route_finds_the_console_files_under_its_path() {
        let a = admin();
        let cases = [
            ("/admin", AdminAsset::Redirect),
            ("/admin/", AdminAsset::Page),
            ("/admin/admin.js", AdminAsset::Script),
            ("/admin/admin.css", AdminAsset::Style),
        ];
        for (path, asset) in cases {
            for m in [Get, Head] {
                let r = route(&m, path, Some(&a));
                assert_eq!(r.outcome(), Outcome::Found(Admin), "{m} {path}");
                assert_eq!(AdminAsset::parse(r.capture(path)), Some(asset), "{path}");
                assert_eq!(label(r.label()), "admin");
                assert!(r.is_immediate() && r.scope(&m).is_none(), "{path}");
            }
            let r = route(&Post, path, Some(&a));
            assert_eq!(
                (r.outcome(), label(r.label())),
                (Outcome::MethodNotAllowed { allow: "GET, HEAD" }, "admin"),
                "{path}"
            );
        }
        for path in ["/admin/x", "/admin//", "/adminx", "/admin/admin.js/"] {
            assert_eq!(route(&Get, path, Some(&a)).outcome(), Outcome::NotFound);
        }
        assert_eq!(route(&Get, "/users", Some(&a)), route(&Get, "/users", None));
    }

    #[test]
    fn route_is_404_at_the_console_paths_when_the_console_is_off() {
        for path in ["/admin", "/admin/", "/admin/admin.js", "/admin/admin.css"] {
            for m in [Get, Post] {
                assert_eq!(route(&m, path, None).outcome(), Outcome::NotFound, "{path}");
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
    fn labels_are_the_api_patterns_then_admin_then_unmatched_each_once() {
        let labels: Vec<&str> = (0..LABELS).map(label).collect();
        assert_eq!(labels[UNMATCHED], "unmatched");
        assert_eq!(labels[UNMATCHED - 1], "admin");
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
            assert_eq!(route(&Get, p, None).scope(&Get), Some(Scope::Read), "{p}");
            assert_eq!(
                route(&Method::Options, p, None).scope(&Method::Options),
                Some(Scope::Write),
                "{p}"
            );
        }
        for p in [
            "/health",
            "/metrics",
            "/openapi.json",
            "/userx",
            "/",
            "//user",
        ] {
            assert_eq!(route(&Post, p, None).scope(&Post), None, "{p}");
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
        .filter(|p| route(&Get, p, Some(&a)).is_immediate())
        .collect();
        assert_eq!(fast, ["/health/live", "/metrics", "/admin/"]);
        assert!(
            !route(&Post, "/metrics", None).is_immediate(),
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
                assert_eq!(route(&m, p, Some(&a)).is_limited(), limited, "{m} {p}");
            }
        }
    }

    #[test]
    fn every_route_is_reached_by_its_own_path_so_none_shadows_another() {
        let a = admin();
        for (i, r) in ROUTES.iter().enumerate() {
            let path = match r.path {
                Path::Api(pattern) => pattern.text.replace("{id}", "1"),
                Path::Admin => "/admin/".to_owned(),
            };
            let found = route(&r.methods[0].0, &path, Some(&a));
            assert_eq!(found.route, u8::try_from(i).ok(), "{path}");
        }
    }

    #[test]
    fn a_route_survives_the_trip_through_a_note() {
        let a = admin();
        let long = format!("/users/{}", "x".repeat(100_000));
        for (m, p) in [
            (Get, "/users/42"),
            (Delete, "/users"),
            (Get, "/admin/admin.css"),
            (Post, "/users/1/x"),
            (Get, "/nowhere"),
            (Get, long.as_str()),
        ] {
            let r = route(&m, p, Some(&a));
            let back = Routed::from_note(r.to_note().unwrap());
            assert_eq!(back, r, "{m} {p}");
            assert_eq!(back.capture(p), r.capture(p));
        }
    }
}
