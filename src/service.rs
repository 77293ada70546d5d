//! The application as the connection layer sees it: one `Handler` that reads every
//! request's id, authorises it, runs it, counts it and writes its access line, even when
//! it panics (the connection layer catches the panic and answers 500).

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};

use crate::auth;
use crate::error::ApiError;
use crate::http::client_addr::{Cidr, client_addr};
use crate::http::{Handler, Method, Note, Refusal, Request, Response, request_id};
use crate::rate_limit::RateLimiter;
use crate::router::AdminPath;
use crate::routes::{self, Ctx, ROUTES, Routed};

pub struct Service {
    pub ctx: Ctx,
    pub served_by: Option<String>,
    pub rate_limiter: Option<RateLimiter>,
    pub trusted_proxies: Vec<Cidr>,
    /// Where the admin console is served, when it is.
    pub admin_path: Option<AdminPath>,
    /// Keeps a flood of the connection layer's refusals from flooding the log.
    pub refusal_log: LogSampler,
}

/// At most `PER_SECOND` lines a second; the rest are counted and the count is logged
/// with the next line let through.
#[derive(Debug, Default)]
pub struct LogSampler {
    /// The second (since `start`) the current count belongs to, and lines let through in it.
    state: std::sync::Mutex<(u64, u32, u64)>,
    start: std::sync::OnceLock<Instant>,
}

impl LogSampler {
    const PER_SECOND: u32 = 20;

    /// Whether to log this line, and how many were left out before it.
    fn admit(&self, now: Instant) -> Option<u64> {
        let start = *self.start.get_or_init(|| now);
        let second = now.saturating_duration_since(start).as_secs();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (at, admitted, skipped) = &mut *state;
        if *at != second {
            (*at, *admitted) = (second, 0);
        }
        if *admitted >= Self::PER_SECOND {
            *skipped += 1;
            return None;
        }
        *admitted += 1;
        Some(std::mem::take(skipped))
    }
}

impl Handler for Service {
    fn handle(&self, req: Request) -> Response {
        self.serve(req, routes::dispatch)
    }

    /// The request's route: the one look-up in the route table it gets.
    fn note(&self, req: &Request) -> Option<Note> {
        self.route(req).to_note()
    }

    /// The routes of [`crate::router::Lane::Connection`].
    fn is_immediate(&self, req: &Request) -> bool {
        self.route(req).is_immediate()
    }

    /// Counted under the route the request named (unmatched when the head was not
    /// read) and logged like any access line, at most 20 a second.
    fn refused(&self, refusal: &Refusal<'_>) {
        let (method, pattern) = match refusal.request {
            Some(req) => (&req.method, self.route(req).label()),
            None => (&Method::Other(String::new()), ROUTES.unmatched()),
        };
        self.ctx
            .metrics
            .observe(method, pattern, refusal.status, Duration::ZERO);
        if !log::log_enabled!(log::Level::Info) {
            return;
        }
        let Some(skipped) = self.refusal_log.admit(Instant::now()) else {
            return;
        };
        let client = refusal
            .request
            .and_then(|req| client_addr(req, &self.trusted_proxies))
            .unwrap_or_else(|| refusal.peer.ip());
        let skipped = Skipped(skipped);
        match refusal.request {
            Some(req) => info!(
                "{client} \"{} {}\" {} - - id=- (refused by the connection layer){skipped}",
                Clipped(req.method.as_str()),
                Target(req),
                refusal.status,
            ),
            None => info!(
                "{client} \"-\" {} - - id=- (refused by the connection layer){skipped}",
                refusal.status
            ),
        }
    }

    /// Authentication and routing need only the head: a request they refuse is answered
    /// before its body is read or `100 Continue` sent, counted and logged like any other.
    fn refuse_head(&self, req: &Request) -> Option<Response> {
        let route = self.route(req);
        let keys = self.ctx.keys.as_ref().map(|store| store.current());
        let access = auth::authorize(
            route.scope(&req.method),
            req.header("authorization"),
            keys.as_deref(),
        );
        if access.check().is_ok() && routes::check_head(route).is_ok() {
            return None;
        }
        // `serve` authorises again (counting the key once, there) and answers the refusal.
        Some(self.serve(req.clone(), refusal_from_head))
    }
}

/// Answers a request that [`routes::check_head`] refuses with that refusal; it is only
/// called for one, so a pass here is a bug, not a request to run.
fn refusal_from_head(
    _: &Ctx,
    _: &Request,
    route: Routed,
    _: Option<&str>,
) -> Result<Response, ApiError> {
    routes::check_head(route)?;
    Err(ApiError::internal("a refused head passed its check"))
}

/// The signature of [`routes::dispatch`], so tests can put a failing one in its place.
type Dispatch = fn(&Ctx, &Request, Routed, Option<&str>) -> Result<Response, ApiError>;

impl Service {
    fn serve(&self, req: Request, dispatch: Dispatch) -> Response {
        // From the complete request, its wait for a worker included: under load that
        // wait is most of a request's time, and the metrics and access log must show it.
        let start = req.received.unwrap_or_else(Instant::now);
        let rid = request_id::from_header(req.header("x-request-id"));
        let route = self.route(&req);
        // A request the connection layer answers itself never queues; one built in a
        // test was never received.
        if let (Some(received), false) = (req.received, route.is_immediate()) {
            self.ctx.metrics.observe_queue_wait(received.elapsed());
        }
        let client = client_addr(&req, &self.trusted_proxies);
        // The set in force when the request arrived serves all of it, even if a reload
        // swaps in another meanwhile.
        let keys = self.ctx.keys.as_ref().map(|store| store.current());
        // SECURITY: authorisation comes before anything else about the request, so an
        // anonymous client learns nothing (not even whether an id is well formed).
        let access = auth::authorize(
            route.scope(&req.method),
            req.header("authorization"),
            keys.as_deref(),
        );
        let key = access.key();
        if let Some(key) = key {
            key.count_request();
        }
        let outcome = {
            // The connection layer catches a panic and answers 500 (and logs it with the
            // id, which it gave the request): counting it and its access line are ours.
            let _on_panic = OnPanic(|| {
                let mut resp = ApiError::internal("handler panicked").to_response();
                resp.headers.push(("X-Request-Id", rid.clone()));
                self.record(client, &req, route, &resp, start, key.map(|k| k.name()));
            });
            self.rate_limit(client, route)
                .and_then(|()| access.check())
                .and_then(|()| dispatch(&self.ctx, &req, route, key.map(|k| k.name())))
        };
        let mut resp = match outcome {
            Ok(resp) => resp,
            Err(e) => {
                log_error(&e, &rid);
                e.to_response()
            }
        };
        resp.headers.push(("X-Request-Id", rid));
        if let Some(s) = &self.served_by {
            resp.headers.push(("X-Served-By", s.clone()));
        }
        self.record(client, &req, route, &resp, start, key.map(|k| k.name()));
        resp
    }

    /// Counts a request answered and writes its access line.
    fn record(
        &self,
        client: Option<IpAddr>,
        req: &Request,
        route: Routed,
        resp: &Response,
        start: Instant,
        key: Option<&str>,
    ) {
        let took = start.elapsed();
        self.ctx
            .metrics
            .observe(&req.method, route.label(), resp.status, took);
        if log::log_enabled!(log::Level::Info) {
            access_line(client, req, resp, took, key);
        }
    }

    /// The route the connection layer noted at head time, or, for a request that did
    /// not come through it (a test's), a fresh look-up.
    fn route(&self, req: &Request) -> Routed {
        match req.note {
            Some(note) => ROUTES.from_note(note),
            None => ROUTES.route(&req.method, &req.path, self.admin_path.as_ref()),
        }
    }

    /// Only the routes the table marks limited count against the client's limit.
    fn rate_limit(&self, client: Option<IpAddr>, route: Routed) -> Result<(), ApiError> {
        let (Some(limiter), Some(client)) = (&self.rate_limiter, client) else {
            return Ok(());
        };
        if !route.is_limited() {
            return Ok(());
        }
        limiter
            .check(client, Instant::now())
            .map_err(|wait| ApiError::RateLimited {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            })
    }
}

/// Runs its closure if dropped while the thread panics: what must happen on the way out
/// of a request that panicked.
struct OnPanic<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnPanic<F> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            (self.0)();
        }
    }
}

/// Each error is logged once, here, with the request id; the client got only
/// `ApiError`'s `Display`.
fn log_error(e: &ApiError, rid: &str) {
    match e.status() {
        500 => error!("request {rid}: {}", e.chain()),
        503 => warn!("request {rid}: {}", e.chain()),
        _ => debug!("request {rid}: {e}"),
    }
}

/// `client "METHOD path" status bytes duration id=... key=...`: the target is clipped
/// and escaped so a hostile request line cannot forge or flood log lines; `key` is the
/// API key's name (never its secret), `-` when none was recognised. Written through
/// `Display` wrappers, so a line costs no allocation of its own.
fn access_line(
    client: Option<IpAddr>,
    req: &Request,
    resp: &Response,
    took: Duration,
    key: Option<&str>,
) {
    info!(
        "{} \"{} {}\" {} {} {}ms id={} key={}",
        OrDash(client),
        Clipped(req.method.as_str()),
        Target(req),
        resp.status,
        resp.body.len(),
        Millis(took),
        OrDash(resp.header("x-request-id")),
        OrDash(key),
    );
}

/// A method (or any short token) as logged: at most 32 characters, escaped, since an
/// unknown method is whatever the client sent.
struct Clipped<'a>(&'a str);

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The usual case, a known method, needs no escaping.
        if self.0.len() <= 32 && plain(self.0) {
            return f.write_str(self.0);
        }
        for c in self.0.chars().take(32) {
            fmt::Display::fmt(&c.escape_debug(), f)?;
        }
        if self.0.chars().nth(32).is_some() {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// Whether `s` is logged as it is: printable ASCII, no quote or backslash to escape.
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// A duration as milliseconds with three decimals, rounded to the microsecond, in
/// integers: float formatting was a visible part of an access line's cost.
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = (self.0.as_nanos() + 500) / 1000;
        write!(f, "{}.{:03}", micros / 1000, micros % 1000)
    }
}

/// `; N more refusals not logged` when some were left out.
struct Skipped(u64);

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, "; {n} more refusals not logged"),
        }
    }
}

struct OrDash<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The request target, at most 256 characters, escaped like a Rust string literal.
struct Target<'a>(&'a Request);

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (path, query) = (&self.0.path, self.0.query.as_deref().unwrap_or(""));
        // The usual case, a short printable target, needs no escaping.
        if path.len() + query.len() < 256 && plain(path) && plain(query) {
            f.write_str(path)?;
            if let Some(q) = &self.0.query {
                f.write_str("?")?;
                f.write_str(q)?;
            }
            return Ok(());
        }
        let query = self
            .0
            .query
            .as_deref()
            .map(|q| ['?'].into_iter().chain(q.chars()));
        let chars = self.0.path.chars().chain(query.into_iter().flatten());
        for c in chars.take(256) {
            fmt::Display::fmt(&c.escape_debug(), f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::db::Db;
    use crate::http::Method;
    use crate::http::server::call_handler;
    use crate::metrics::Metrics;

    /// A service whose database is never reached by these tests.
    fn service(rate_limiter: Option<RateLimiter>) -> Service {
        let config = Config::from_lookup(|k| match k {
            "DATABASE_URL" => Some("postgres://u:p@127.0.0.1:1/db".into()),
            _ => None,
        })
        .unwrap();
        Service {
            ctx: Ctx {
                db: Db::new(&config.db),
                metrics: Metrics::new("test", ROUTES.labels()),
                keys: None,
                max_body_bytes: 100,
                require_if_match: false,
                idempotency_key_ttl: Duration::from_secs(60),
                purger: None,
                max_list_offset: 10_000,
            },
            served_by: Some("replica-1".into()),
            rate_limiter,
            trusted_proxies: Vec::new(),
            admin_path: config.admin_path.clone(),
            refusal_log: LogSampler::default(),
        }
    }

    fn get(path: &str) -> Request {
        let mut r = Request::new(Method::Get, path);
        r.peer = Some("192.0.2.1:5555".parse().unwrap());
        r
    }

    /// The app as the workers run it, with a `dispatch` that panics.
    struct Panicking(Service);

    impl Handler for Panicking {
        fn handle(&self, req: Request) -> Response {
            self.0.serve(req, |_, _, _, _| panic!("boom"))
        }
    }

    /// Log lines written while the test runs, from every test of this binary.
    fn captured_log() -> &'static std::sync::Mutex<Vec<String>> {
        struct Capture;
        static LINES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        impl log::Log for Capture {
            fn enabled(&self, _: &log::Metadata<'_>) -> bool {
                true
            }
            fn log(&self, record: &log::Record<'_>) {
                if let Ok(mut lines) = LINES.lock() {
                    lines.push(record.args().to_string());
                }
            }
            fn flush(&self) {}
        }
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            if log::set_boxed_logger(Box::new(Capture)).is_ok() {
                log::set_max_level(log::LevelFilter::Info);
            }
        });
        &LINES
    }

    fn lines_naming(id: &str) -> Vec<String> {
        let lines = captured_log().lock().unwrap_or_else(|p| p.into_inner());
        lines.iter().filter(|l| l.contains(id)).cloned().collect()
    }

    #[test]
    fn panic_in_a_handler_gives_500_counted_and_logged_with_its_id_and_the_next_request_is_served()
    {
        captured_log();
        let app = Panicking(service(None));
        let req = get("/health/live").with_header("X-Request-Id", "panic-test-1");
        let resp = call_handler(&app, req);
        assert_eq!(resp.status, 500);
        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(body, serde_json::json!({"error": "internal server error"}));
        assert_eq!(resp.header("x-request-id"), Some("panic-test-1"));

        let metrics = app.0.ctx.metrics.render(Default::default(), None);
        assert!(
            metrics.contains(
                "http_requests_total{method=\"GET\",route=\"/health/live\",status=\"500\"} 1\n"
            ),
            "{metrics}"
        );
        let logged = lines_naming("panic-test-1");
        assert_eq!(
            logged
                .iter()
                .filter(|l| l.contains("the handler panicked"))
                .count(),
            1,
            "{logged:?}"
        );
        let access: Vec<_> = logged.iter().filter(|l| l.contains(" 500 ")).collect();
        assert_eq!(access.len(), 1, "{logged:?}");
        assert!(access[0].contains("id=panic-test-1"), "{logged:?}");

        assert_eq!(app.0.handle(get("/health/live")).status, 200);
    }

    #[test]
    fn panic_is_logged_under_the_id_its_500_carries_when_the_client_sent_none() {
        captured_log();
        let app = Panicking(service(None));
        let resp = call_handler(&app, get("/health/live"));
        let id = resp.header("x-request-id").expect("an id").to_owned();
        let logged = lines_naming(&id);
        assert!(
            logged
                .iter()
                .any(|l| l.contains(" 500 ") && l.contains(&format!("id={id}"))),
            "{logged:?}"
        );
        assert!(
            logged.iter().any(|l| l.contains("the handler panicked")),
            "{logged:?}"
        );
    }

    #[test]
    fn a_requests_time_counts_from_when_it_was_complete_in_the_metrics_and_the_access_log() {
        captured_log();
        let s = service(None);
        let mut req = get("/health/live").with_header("X-Request-Id", "waited-1");
        // As if it had waited 300 ms in the queue for a worker.
        req.received = Instant::now().checked_sub(Duration::from_millis(300));
        assert!(req.received.is_some());
        assert_eq!(s.handle(req).status, 200);
        let metrics = s.ctx.metrics.render(Default::default(), None);
        let bucket = |le: &str| {
            format!("http_request_duration_seconds_bucket{{route=\"/health/live\",le=\"{le}\"}}")
        };
        assert!(metrics.contains(&(bucket("0.25") + " 0\n")), "{metrics}");
        assert!(metrics.contains(&(bucket("0.5") + " 1\n")), "{metrics}");
        let logged = lines_naming("waited-1");
        let took: f64 = logged
            .iter()
            .find_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_suffix("ms")?.parse().ok())
            })
            .expect("an access line with its time");
        assert!(took >= 300.0, "{logged:?}");
    }

    #[test]
    fn a_requests_wait_for_a_worker_is_counted_apart_and_an_immediate_one_never_waits() {
        let s = service(None);
        let waited = |path: &str, ms: u64| {
            let mut req = get(path);
            req.received = Instant::now().checked_sub(Duration::from_millis(ms));
            assert!(req.received.is_some());
            s.handle(req);
        };
        let queue = |le: &str| {
            let text = s.ctx.metrics.render(Default::default(), None);
            let series = format!("http_request_queue_seconds_bucket{{le=\"{le}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&series)?.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {series}in {text}"))
        };
        // As if they had waited 300 ms and 0 ms in the queue (the second's count may
        // still take a little while on a busy machine: no tighter bound than 0.25 s).
        waited("/nowhere", 300);
        waited("/nowhere", 0);
        assert_eq!((queue("0.25"), queue("0.5")), (1, 2));
        // Answered on the connection layer's thread: it took no worker, so it is no
        // evidence about the queue, however long ago it arrived.
        waited("/health/live", 300);
        assert_eq!((queue("0.25"), queue("+Inf")), (1, 2));
        // Built in a test, never received: not counted either.
        s.handle(get("/nowhere"));
        assert_eq!(queue("+Inf"), 2);
    }

    #[test]
    fn a_request_is_served_by_the_route_noted_from_its_head_not_looked_up_again() {
        let s = service(None);
        let noted = |path: &str, as_if: &str| {
            let mut r = get(path);
            r.note = s.note(&get(as_if));
            r
        };
        assert_eq!(s.handle(noted("/nowhere", "/health/live")).status, 200);
        assert!(s.is_immediate(&noted("/nowhere", "/metrics")));
        assert!(!s.is_immediate(&noted("/metrics", "/nowhere")));
        assert_eq!(s.handle(noted("/health/live", "/nowhere")).status, 404);
    }

    #[test]
    fn every_response_carries_request_id_and_served_by() {
        let s = service(None);
        let resp = s.handle(get("/nowhere").with_header("X-Request-Id", "abc.1"));
        assert_eq!(resp.status, 404);
        assert_eq!(resp.header("x-request-id"), Some("abc.1"));
        assert_eq!(resp.header("x-served-by"), Some("replica-1"));
    }

    #[test]
    fn access_target_is_escaped_and_clipped() {
        let mut r = get("/user/1");
        r.query = Some("a=\"x\"\n".into());
        assert_eq!(Target(&r).to_string(), "/user/1?a=\\\"x\\\"\\n");
        let long = get(&format!("/{}", "é".repeat(300)));
        assert_eq!(Target(&long).to_string().chars().count(), 256);
    }

    #[test]
    fn access_duration_is_milliseconds_rounded_to_the_microsecond() {
        let shown = |nanos| Millis(Duration::from_nanos(nanos)).to_string();
        assert_eq!(shown(0), "0.000");
        assert_eq!(shown(499), "0.000");
        assert_eq!(shown(500), "0.001");
        assert_eq!(shown(1_234_567), "1.235");
        assert_eq!(shown(12_000_000), "12.000");
        assert_eq!(shown(999_999_999), "1000.000");
    }

    #[test]
    fn rate_limit_answers_429_with_retry_after_but_spares_health() {
        let s = service(Some(RateLimiter::new(0.5, 2.0)));
        assert_eq!(s.handle(get("/nowhere")).status, 404);
        assert_eq!(s.handle(get("/nowhere")).status, 404);
        let resp = s.handle(get("/nowhere"));
        assert_eq!(resp.status, 429);
        assert_eq!(resp.header("retry-after"), Some("2"));
        assert_eq!(s.handle(get("/health/live")).status, 200);
    }

    #[test]
    fn logged_method_is_clipped_and_escaped_when_it_is_long_or_odd() {
        let long = "X".repeat(16_000);
        let shown = Clipped(&long).to_string();
        assert_eq!(shown, format!("{}...", "X".repeat(32)));
        assert_eq!(Clipped("GE\"T\n").to_string(), "GE\\\"T\\n");
        assert_eq!(Clipped("GET").to_string(), "GET");
    }

    #[test]
    fn refusal_log_lets_twenty_lines_a_second_through_and_counts_the_rest() {
        let sampler = LogSampler::default();
        let t0 = Instant::now();
        for _ in 0..20 {
            assert_eq!(sampler.admit(t0), Some(0));
        }
        assert_eq!(sampler.admit(t0), None);
        assert_eq!(sampler.admit(t0), None);
        assert_eq!(sampler.admit(t0 + Duration::from_secs(1)), Some(2));
    }
}
