//! Routing: the machinery that reads a route table. A [`Table`] lists routes, each
//! declaring its path, which method runs what, who may call it, whether it is rate
//! limited, which thread answers it and (by its path) its metrics label. `Allow` and 405,
//! authorisation, rate limiting, the fast lane, `/metrics` and the OpenAPI check all read
//! the table; nothing else knows a path. [`Table::route`] looks a request up once, and
//! the [`Routed`] it returns travels with the request (as an
//! [`http::Note`](crate::http::Note)) from the connection layer's thread to the worker.
//!
//! This module knows nothing of what a method runs: a table is generic over it (`H`).
//! The service's own table, whose methods name their handlers, is `routes::ROUTES`.

use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;

use crate::http::{Method, Note};
use crate::keys::Scope;

/// A route table: its routes in the order they are tried and their `/metrics` series
/// listed. Made once, as a `static`, by [`Table::new`].
pub struct Table<H: 'static> {
    routes: &'static [Route<H>],
    /// Each route's `Allow` list, joined once, on the first 405.
    allow: OnceLock<Vec<String>>,
}

/// One route: everything the service decides about a request from its path alone.
pub struct Route<H: 'static> {
    pub path: Path,
    /// The methods the route takes, in the order `Allow` lists them, and what each runs.
    pub methods: &'static [(Method, H)],
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
use Lane::Connection;
use Method::{Get, Head};

/// The label of a request that matched no path.
const UNMATCHED_LABEL: &str = "unmatched";

impl<H: 'static> Table<H> {
    /// The table of `routes`. Their order is the order of the series in `/metrics` and
    /// the order a path is tried in: the first route whose path matches wins, so a
    /// literal path (`/users/me`) goes before a pattern that would also take it
    /// (`/users/{id}`).
    pub const fn new(routes: &'static [Route<H>]) -> Table<H> {
        // A route's index fits the byte a [`Note`] keeps it in, `0xff` meaning none.
        assert!(routes.len() < 0xff, "too many routes for a Note");
        Table {
            routes,
            allow: OnceLock::new(),
        }
    }

    pub fn routes(&self) -> &'static [Route<H>] {
        self.routes
    }

    /// The metrics labels, by index ([`Routed::label`]): one per route ([`Route::label`]),
    /// then `unmatched`.
    pub fn labels(&self) -> Vec<&'static str> {
        let routes = self.routes.iter().map(Route::label);
        routes.chain([UNMATCHED_LABEL]).collect()
    }

    /// The index of the label of a request that matched no path.
    pub fn unmatched(&self) -> usize {
        self.routes.len()
    }

    /// Looks a request up, with the console's files at `admin` when it is served.
    pub fn route(
        &'static self,
        method: &Method,
        path: &str,
        admin: Option<&AdminPath>,
    ) -> Routed<H> {
        for (i, r) in self.routes.iter().enumerate() {
            let Some(capture) = r.matches(path, admin) else {
                continue;
            };
            let (Ok(start), Ok(end)) = (u32::try_from(capture.start), u32::try_from(capture.end))
            else {
                break;
            };
            return Routed {
                table: self,
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
        // SECURITY: a path under a keyed route's first segment (`/users/1/x`) is refused
        // to an anonymous client like the route itself, so nobody learns which paths exist.
        let area = first_segment(path);
        let keyed = self
            .routes
            .iter()
            .any(|r| r.auth == Key && r.area() == Some(area));
        Routed {
            table: self,
            route: None,
            method: None,
            capture: (0, 0),
            auth: if keyed { Key } else { Open },
        }
    }

    /// The inverse of [`Routed::to_note`], for a note made from this table.
    pub fn from_note(&'static self, note: Note) -> Routed<H> {
        let byte = |shift: u32| {
            let b = (note.0 >> shift) as u8;
            (b != 0xff).then_some(b)
        };
        let offset = |shift: u32| ((note.0 >> shift) & ((1 << 23) - 1)) as u32;
        Routed {
            table: self,
            route: byte(0),
            method: byte(8),
            capture: (offset(17), offset(40)),
            auth: if note.0 & 1 << 16 != 0 { Key } else { Open },
        }
    }

    /// The `Allow` list of route `i`: its methods in table order.
    fn allow(&'static self, i: usize) -> &'static str {
        let lists = self.allow.get_or_init(|| {
            self.routes
                .iter()
                .map(|r| {
                    let names: Vec<&str> = r.methods.iter().map(|(m, _)| m.as_str()).collect();
                    names.join(", ")
                })
                .collect()
        });
        lists.get(i).map_or("", String::as_str)
    }
}

impl<H: 'static> Route<H> {
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

/// What [`Table::route`] found for a request: small and `Copy`, so it travels with the
/// request from its head to the worker that answers it.
pub struct Routed<H: 'static> {
    /// The table it was looked up in.
    table: &'static Table<H>,
    /// Index in the table of the route whose path matched; `None` when none did.
    route: Option<u8>,
    /// Index in that route's methods of the request's method; `None`: 405.
    method: Option<u8>,
    /// Where in the path the route's capture lies (`{id}`, the console's file).
    capture: (u32, u32),
    /// The matched route's, or for an unmatched path the strictest of its area's.
    auth: Auth,
}

// By hand: derived, these would ask the same of `H` (a function pointer, whose
// comparison Rust does not promise to be meaningful); the table is compared by address.
impl<H> Clone for Routed<H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H> Copy for Routed<H> {}

impl<H> PartialEq for Routed<H> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.table, other.table)
            && (self.route, self.method, self.capture, self.auth)
                == (other.route, other.method, other.capture, other.auth)
    }
}

impl<H> Eq for Routed<H> {}

impl<H> fmt::Debug for Routed<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routed")
            .field("route", &self.row().map(Route::label))
            .field("method", &self.method)
            .field("capture", &self.capture)
            .field("auth", &self.auth)
            .finish()
    }
}

/// What a request amounts to.
#[derive(Clone, Copy, Debug)]
pub enum Outcome<H> {
    /// What the route's table maps the method to.
    Found(H),
    /// 405, with the `Allow` list.
    MethodNotAllowed {
        allow: &'static str,
    },
    NotFound,
}

impl<H: Copy + 'static> Routed<H> {
    pub fn outcome(&self) -> Outcome<H> {
        let Some(row) = self.row() else {
            return Outcome::NotFound;
        };
        match self.method.and_then(|m| row.methods.get(usize::from(m))) {
            Some((_, found)) => Outcome::Found(*found),
            None => Outcome::MethodNotAllowed {
                allow: self.table.allow(usize::from(self.route.unwrap_or(0))),
            },
        }
    }

    /// Whether the connection layer's thread answers it ([`Lane::Connection`]); a 404 or
    /// 405 never is.
    pub fn is_immediate(&self) -> bool {
        matches!(self.outcome(), Outcome::Found(_))
            && self.row().is_some_and(|r| r.lane == Connection)
    }
}

impl<H: 'static> Routed<H> {
    fn row(&self) -> Option<&'static Route<H>> {
        self.table.routes.get(usize::from(self.route?))
    }

    /// The index of its metrics label ([`Table::labels`]).
    pub fn label(&self) -> usize {
        self.route.map_or(self.table.unmatched(), usize::from)
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

    /// Packs it into the connection layer's opaque [`Note`]: the route in bits 0–7, the
    /// method in 8–15 (`0xff`: none), `Auth::Key` in bit 16, the capture in 17–39 and
    /// 40–62 (heads are at most 1 MiB, so 23 bits hold any offset). The table is not in
    /// it: [`Table::from_note`] is asked of the same one.
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
/// keyed route's first segment, can also claim in the table it is served beside. Built
/// only through [`AdminPath::parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminPath(String);

impl AdminPath {
    /// `/` and one or more segments of `[A-Za-z0-9._~-]`, without a trailing `/`, that
    /// `table`'s routes leave free.
    pub fn parse<H>(s: &str, table: &'static Table<H>) -> Result<AdminPath, String> {
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
            let r = table.route(&Get, &format!("{s}{file}"), None);
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
    //! The machinery, on a table of its own whose methods map to names. The service's
    //! table is tested in `routes::table`.

    use super::*;
    use Method::{Delete, Post, Put};

    const ONE: &[(Method, &str)] = &[(Get, "get"), (Head, "get"), (Put, "put")];

    static TABLE: Table<&str> = Table::new(&[
        Route {
            path: Path::api("/things"),
            methods: &[(Get, "list"), (Post, "create")],
            auth: Key,
            limited: true,
            lane: Lane::Worker,
        },
        Route {
            path: Path::api("/things/mine"),
            methods: &[(Get, "mine")],
            auth: Key,
            limited: true,
            lane: Lane::Worker,
        },
        Route {
            path: Path::api("/things/{id}"),
            methods: ONE,
            auth: Key,
            limited: true,
            lane: Lane::Worker,
        },
        Route {
            path: Path::api("/things/{id}/parts"),
            methods: &[(Get, "parts")],
            auth: Key,
            limited: true,
            lane: Lane::Worker,
        },
        Route {
            path: Path::api("/ping"),
            methods: &[(Get, "ping")],
            auth: Open,
            limited: false,
            lane: Lane::Connection,
        },
        Route {
            path: Path::Admin,
            methods: &[(Get, "admin"), (Head, "admin")],
            auth: Open,
            limited: true,
            lane: Lane::Connection,
        },
    ]);

    fn admin() -> AdminPath {
        AdminPath::parse("/admin", &TABLE).unwrap()
    }

    fn found(m: Method, path: &str) -> (&'static str, &'static str, &str) {
        let r = TABLE.route(&m, path, Some(&admin()));
        match r.outcome() {
            Outcome::Found(name) => (name, TABLE.labels()[r.label()], r.capture(path)),
            other => panic!("{m} {path}: {other:?}"),
        }
    }

    fn allow(m: Method, path: &str) -> Option<&'static str> {
        match TABLE.route(&m, path, Some(&admin())).outcome() {
            Outcome::MethodNotAllowed { allow } => Some(allow),
            _ => None,
        }
    }

    fn not_found(m: Method, path: &str, admin: Option<&AdminPath>) -> bool {
        matches!(TABLE.route(&m, path, admin).outcome(), Outcome::NotFound)
    }

    #[test]
    fn route_runs_what_the_method_maps_to_with_the_capture_and_the_first_match_wins() {
        assert_eq!(found(Get, "/things"), ("list", "/things", ""));
        assert_eq!(found(Post, "/things"), ("create", "/things", ""));
        assert_eq!(found(Get, "/things/mine"), ("mine", "/things/mine", ""));
        assert_eq!(found(Head, "/things/7"), ("get", "/things/{id}", "7"));
        assert_eq!(found(Put, "/things/x"), ("put", "/things/{id}", "x"));
        assert_eq!(
            found(Get, "/things/7/parts"),
            ("parts", "/things/{id}/parts", "7")
        );
        assert_eq!(found(Get, "/ping"), ("ping", "/ping", ""));
    }

    #[test]
    fn route_is_405_with_the_methods_in_table_order_when_the_method_does_not_fit() {
        assert_eq!(allow(Delete, "/things"), Some("GET, POST"));
        assert_eq!(allow(Post, "/things/1"), Some("GET, HEAD, PUT"));
        assert_eq!(allow(Method::Options, "/ping"), Some("GET"));
        assert_eq!(
            allow(Method::Other("BREW".into()), "/admin/"),
            Some("GET, HEAD")
        );
        assert_eq!(allow(Get, "/ping"), None);
    }

    #[test]
    fn route_is_404_when_no_path_matches() {
        for path in [
            "/",
            "",
            "/things/",
            "/things/1/x",
            "/things//parts",
            "/thingsx",
            "/ping/",
            "/THINGS",
            "//things",
        ] {
            let r = TABLE.route(&Get, path, Some(&admin()));
            assert!(not_found(Get, path, Some(&admin())), "{path}");
            assert_eq!(r.label(), TABLE.unmatched(), "{path}");
        }
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
                assert_eq!(found(m.clone(), path).0, "admin", "{m} {path}");
                let r = TABLE.route(&m, path, Some(&a));
                assert_eq!(AdminAsset::parse(r.capture(path)), Some(asset), "{path}");
                assert_eq!(TABLE.labels()[r.label()], "admin");
                assert!(r.is_immediate() && r.scope(&m).is_none(), "{path}");
            }
            assert_eq!(allow(Post, path), Some("GET, HEAD"), "{path}");
        }
        for path in ["/admin/x", "/admin//", "/adminx", "/admin/admin.js/"] {
            assert!(not_found(Get, path, Some(&a)), "{path}");
        }
        assert_eq!(
            TABLE.route(&Get, "/things", Some(&a)),
            TABLE.route(&Get, "/things", None)
        );
    }

    #[test]
    fn route_is_404_at_the_console_paths_when_the_console_is_off() {
        for path in ["/admin", "/admin/", "/admin/admin.js", "/admin/admin.css"] {
            for m in [Get, Post] {
                assert!(not_found(m, path, None), "{path}");
            }
        }
    }

    #[test]
    fn admin_path_is_refused_when_malformed_or_over_a_route_of_its_table() {
        for ok in ["/admin", "/ops/console", "/_admin-1.x~", "/pingx"] {
            assert_eq!(AdminPath::parse(ok, &TABLE).unwrap().as_str(), ok);
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
            "/things",
            "/things/admin",
            "/ping",
        ] {
            assert!(AdminPath::parse(bad, &TABLE).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_keyed_route_guards_every_path_under_its_first_segment() {
        for p in ["/things", "/things/1", "/things/", "/things/1/x"] {
            let r = TABLE.route(&Get, p, None);
            assert_eq!(r.scope(&Get), Some(Scope::Read), "{p}");
            assert_eq!(r.scope(&Method::Options), Some(Scope::Write), "{p}");
        }
        for p in ["/ping", "/thingsx", "/", "//things"] {
            assert_eq!(TABLE.route(&Post, p, None).scope(&Post), None, "{p}");
        }
    }

    #[test]
    fn labels_are_the_routes_in_table_order_then_unmatched() {
        assert_eq!(
            TABLE.labels(),
            [
                "/things",
                "/things/mine",
                "/things/{id}",
                "/things/{id}/parts",
                "/ping",
                "admin",
                "unmatched"
            ]
        );
        assert_eq!(TABLE.unmatched(), TABLE.labels().len() - 1);
    }

    #[test]
    fn the_lane_and_the_limit_are_the_matched_routes_and_a_miss_is_limited_on_a_worker() {
        let a = admin();
        let r = |m: Method, p: &str| TABLE.route(&m, p, Some(&a));
        assert!(r(Get, "/ping").is_immediate() && !r(Get, "/ping").is_limited());
        assert!(!r(Post, "/ping").is_immediate(), "a 405 waits");
        assert!(!r(Get, "/things").is_immediate() && r(Get, "/things").is_limited());
        assert!(!r(Get, "/nowhere").is_immediate() && r(Get, "/nowhere").is_limited());
    }

    #[test]
    fn a_route_survives_the_trip_through_a_note() {
        let a = admin();
        let long = format!("/things/{}", "x".repeat(100_000));
        for (m, p) in [
            (Get, "/things/42"),
            (Delete, "/things"),
            (Get, "/admin/admin.css"),
            (Post, "/things/1/x"),
            (Get, "/nowhere"),
            (Get, long.as_str()),
        ] {
            let r = TABLE.route(&m, p, Some(&a));
            let back = TABLE.from_note(r.to_note().unwrap());
            assert_eq!(back, r, "{m} {p}");
            assert_eq!(back.capture(p), r.capture(p));
        }
    }
}
