//! Metrics: lock-free counters and a latency histogram, rendered in Prometheus text
//! format 0.0.4.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::db::PoolStats;
use crate::http::Method;

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
];
const STATUSES: [u16; 24] = [
    200, 201, 204, 304, 308, 400, 401, 403, 404, 405, 408, 409, 412, 413, 414, 415, 422, 428, 429,
    431, 500, 501, 503, 505,
];
/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
pub struct Metrics {
    /// The `route` label of each route index, the last for a request that matched none.
    routes: Vec<&'static str>,
    requests: Vec<AtomicU64>,
    /// Per route: one count per bucket plus the overflow (`+Inf`), not cumulative.
    buckets: Vec<AtomicU64>,
    sum_micros: Vec<AtomicU64>,
    /// How long requests waited for a worker: one count per bucket plus the overflow.
    queue_buckets: Vec<AtomicU64>,
    queue_sum_micros: AtomicU64,
    /// Answers replayed for a repeated `Idempotency-Key`.
    replays: AtomicU64,
    version: &'static str,
}

fn zeros(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl Metrics {
    /// Counters for requests labelled with `routes` (by index, as [`observe`](Self::observe)
    /// is told), in the order they are rendered: the route table's labels
    /// (`router::Table::labels`), whose last is the one of a request that matched none.
    pub fn new(version: &'static str, routes: Vec<&'static str>) -> Metrics {
        let n = routes.len().max(1);
        Metrics {
            requests: zeros(n * METHODS.len() * (STATUSES.len() + 1)),
            buckets: zeros(n * (BUCKETS.len() + 1)),
            sum_micros: zeros(n),
            queue_buckets: zeros(BUCKETS.len() + 1),
            queue_sum_micros: AtomicU64::new(0),
            routes,
            replays: AtomicU64::new(0),
            version,
        }
    }

    /// Counts one request; `route` is the index of its label (see [`new`](Self::new));
    /// an index past the last counts under the last.
    pub fn observe(&self, method: &Method, route: usize, status: u16, took: Duration) {
        let m = match method {
            Method::Get => 0,
            Method::Head => 1,
            Method::Post => 2,
            Method::Put => 3,
            Method::Patch => 4,
            Method::Delete => 5,
            Method::Options => 6,
            Method::Other(_) => 7,
        };
        let s = STATUSES
            .iter()
            .position(|&x| x == status)
            .unwrap_or(STATUSES.len());
        let route = route.min(self.sum_micros.len() - 1);
        self.requests[(route * METHODS.len() + m) * (STATUSES.len() + 1) + s].fetch_add(1, Relaxed);
        self.buckets[route * (BUCKETS.len() + 1) + bucket(took)].fetch_add(1, Relaxed);
        self.sum_micros[route].fetch_add(took.as_micros() as u64, Relaxed);
    }

    /// Counts how long a request waited, complete, in the queue before a worker took it:
    /// the part of its time that more `WORKERS` (or fewer slow requests) would cut.
    pub fn observe_queue_wait(&self, waited: Duration) {
        self.queue_buckets[bucket(waited)].fetch_add(1, Relaxed);
        self.queue_sum_micros
            .fetch_add(waited.as_micros() as u64, Relaxed);
    }

    /// The per-key request counter, appended to `out`: one series per key in force,
    /// labelled with its name (never its secret or hash), so bounded by the keys file.
    pub fn render_key_requests<'a>(out: &mut String, keys: impl Iterator<Item = (&'a str, u64)>) {
        out.push_str(
            "# HELP http_requests_by_key_total Requests made with each API key in force, whatever their answer.\n",
        );
        out.push_str("# TYPE http_requests_by_key_total counter\n");
        for (name, n) in keys {
            // Key names are [A-Za-z0-9._-]: nothing to escape in a label value.
            let _ = writeln!(out, "http_requests_by_key_total{{key=\"{name}\"}} {n}");
        }
    }

    /// Counts one answer replayed for a repeated `Idempotency-Key`.
    pub fn count_replay(&self) {
        self.replays.fetch_add(1, Relaxed);
    }

    /// 412s over every route and method: read from the request counts, so the hot path
    /// pays nothing for it.
    fn precondition_failures(&self) -> u64 {
        let s = STATUSES.iter().position(|&x| x == 412).unwrap_or(0);
        self.requests
            .iter()
            .skip(s)
            .step_by(STATUSES.len() + 1)
            .map(|c| c.load(Relaxed))
            .sum()
    }

    /// The exposition text.
    pub fn render(&self, pool: PoolStats, replica: Option<(PoolStats, u64)>) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP http_requests_total Requests answered, by method, route pattern and status.\n",
        );
        out.push_str("# TYPE http_requests_total counter\n");
        for (route, pattern) in self.routes.iter().enumerate() {
            for (m, method) in METHODS.iter().enumerate() {
                for s in 0..=STATUSES.len() {
                    let idx = (route * METHODS.len() + m) * (STATUSES.len() + 1) + s;
                    let n = self.requests[idx].load(Relaxed);
                    if n > 0 {
                        let status = STATUSES.get(s).map_or("other".to_owned(), u16::to_string);
                        let _ = writeln!(
                            out,
                            "http_requests_total{{method=\"{method}\",route=\"{pattern}\",status=\"{status}\"}} {n}"
                        );
                    }
                }
            }
        }
        out.push_str("# HELP http_request_duration_seconds Time from a complete request to its response, by route pattern.\n");
        out.push_str("# TYPE http_request_duration_seconds histogram\n");
        for (route, pattern) in self.routes.iter().enumerate() {
            let counts =
                read(&self.buckets[route * (BUCKETS.len() + 1)..(route + 1) * (BUCKETS.len() + 1)]);
            // A route never asked for has no series, as in `http_requests_total`.
            if counts.iter().any(|&c| c > 0) {
                let sum = self.sum_micros[route].load(Relaxed);
                let label = format!("route=\"{pattern}\"");
                render_histogram(
                    &mut out,
                    "http_request_duration_seconds",
                    &label,
                    &counts,
                    sum,
                );
            }
        }
        out.push_str(
            "# HELP http_request_queue_seconds Time complete requests waited for a worker.\n",
        );
        out.push_str("# TYPE http_request_queue_seconds histogram\n");
        let sum = self.queue_sum_micros.load(Relaxed);
        render_histogram(
            &mut out,
            "http_request_queue_seconds",
            "",
            &read(&self.queue_buckets),
            sum,
        );
        let _ = write!(
            out,
            "# HELP db_pool_connections Pooled database connections, by state.\n\
             # TYPE db_pool_connections gauge\n\
             db_pool_connections{{state=\"idle\"}} {}\n\
             db_pool_connections{{state=\"in_use\"}} {}\n\
             # HELP db_pool_wait_timeouts_total Requests that found no pooled connection in time.\n\
             # TYPE db_pool_wait_timeouts_total counter\n\
             db_pool_wait_timeouts_total {}\n\
             # HELP db_query_timeouts_total Statements the database did not answer within DB_QUERY_TIMEOUT_MS.\n\
             # TYPE db_query_timeouts_total counter\n\
             db_query_timeouts_total {}\n\
             # HELP idempotent_replays_total Answers replayed for a repeated Idempotency-Key.\n\
             # TYPE idempotent_replays_total counter\n\
             idempotent_replays_total {}\n\
             # HELP http_precondition_failed_total Writes refused with 412 because If-Match matched no current version.\n\
             # TYPE http_precondition_failed_total counter\n\
             http_precondition_failed_total {}\n\
             # HELP user_api_build_info The running version.\n\
             # TYPE user_api_build_info gauge\n\
             user_api_build_info{{version=\"{}\"}} 1\n",
            pool.idle,
            pool.in_use,
            pool.wait_timeouts,
            pool.query_timeouts,
            self.replays.load(Relaxed),
            self.precondition_failures(),
            self.version
        );
        if let Some((r, fallbacks)) = replica {
            let _ = write!(
                out,
                "# HELP db_replica_pool_connections Pooled read-replica connections, by state.\n\
                 # TYPE db_replica_pool_connections gauge\n\
                 db_replica_pool_connections{{state=\"idle\"}} {}\n\
                 db_replica_pool_connections{{state=\"in_use\"}} {}\n\
                 # HELP db_replica_fallbacks_total Reads sent to the primary because the replica could not serve them.\n\
                 # TYPE db_replica_fallbacks_total counter\n\
                 db_replica_fallbacks_total {fallbacks}\n",
                r.idle, r.in_use
            );
        }
        out
    }
}

/// The bucket a duration falls in: the first whose bound it does not pass, or the
/// overflow.
fn bucket(d: Duration) -> usize {
    let secs = d.as_secs_f64();
    BUCKETS
        .iter()
        .position(|&le| secs <= le)
        .unwrap_or(BUCKETS.len())
}

/// One histogram's series: `counts` per bucket (not cumulative, the overflow last),
/// `labels` the series' own (`route="/users"`, or none), `sum_micros` their total. Each
/// counter is read once, so the buckets stay cumulative and `+Inf` equals `_count` even
/// while requests are counted.
fn render_histogram(out: &mut String, name: &str, labels: &str, counts: &[u64], sum_micros: u64) {
    let (bucket_labels, own) = if labels.is_empty() {
        (String::new(), String::new())
    } else {
        (format!("{labels},"), format!("{{{labels}}}"))
    };
    let mut cumulative = 0;
    for (le, count) in BUCKETS.iter().zip(counts) {
        cumulative += count;
        let _ = writeln!(
            out,
            "{name}_bucket{{{bucket_labels}le=\"{le}\"}} {cumulative}"
        );
    }
    let total: u64 = counts.iter().sum();
    let _ = writeln!(out, "{name}_bucket{{{bucket_labels}le=\"+Inf\"}} {total}");
    let sum = sum_micros as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum{own} {sum}");
    let _ = writeln!(out, "{name}_count{own} {total}");
}

/// The counters' values now.
fn read(counters: &[AtomicU64]) -> Vec<u64> {
    counters.iter().map(|c| c.load(Relaxed)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Labels as a route table gives them: its routes', then the unmatched one's.
    const LABELS: [&str; 5] = ["/user", "/users", "/user/{id}", "/users/{id}", "unmatched"];
    const UNMATCHED: usize = LABELS.len() - 1;

    fn metrics(version: &'static str) -> Metrics {
        Metrics::new(version, LABELS.to_vec())
    }

    const POOL: PoolStats = PoolStats {
        idle: 3,
        in_use: 1,
        wait_timeouts: 2,
        query_timeouts: 5,
    };

    #[test]
    fn render_counts_by_method_route_and_status() {
        let m = metrics("1.2.3");
        m.observe(&Method::Get, 2, 200, Duration::from_micros(700));
        m.observe(&Method::Get, 2, 200, Duration::from_millis(3));
        m.observe(
            &Method::Other("BREW".into()),
            UNMATCHED,
            404,
            Duration::from_secs(9),
        );
        let text = m.render(POOL, None);
        assert!(text.contains(
            "http_requests_total{method=\"GET\",route=\"/user/{id}\",status=\"200\"} 2\n"
        ));
        assert!(text.contains(
            "http_requests_total{method=\"OTHER\",route=\"unmatched\",status=\"404\"} 1\n"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{route=\"/user/{id}\",le=\"0.0005\"} 0\n"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{route=\"/user/{id}\",le=\"0.001\"} 1\n"
        ));
        assert!(text.contains(
            "http_request_duration_seconds_bucket{route=\"/user/{id}\",le=\"0.005\"} 2\n"
        ));
        assert!(
            text.contains("http_request_duration_seconds_bucket{route=\"unmatched\",le=\"5\"} 0\n")
        );
        assert!(
            text.contains(
                "http_request_duration_seconds_bucket{route=\"unmatched\",le=\"+Inf\"} 1\n"
            )
        );
        assert!(text.contains("http_request_duration_seconds_count{route=\"/user/{id}\"} 2\n"));
        assert!(text.contains("db_pool_connections{state=\"idle\"} 3\n"));
        assert!(text.contains("db_pool_connections{state=\"in_use\"} 1\n"));
        assert!(text.contains("db_pool_wait_timeouts_total 2\n"));
        assert!(text.contains("db_query_timeouts_total 5\n"));
        assert!(text.contains("user_api_build_info{version=\"1.2.3\"} 1\n"));
        assert!(text.contains("idempotent_replays_total 0\n"));
        assert!(text.contains("http_precondition_failed_total 0\n"));
        assert!(!text.contains("replica"));
        let text = m.render(POOL, Some((POOL, 7)));
        assert!(text.contains("db_replica_pool_connections{state=\"idle\"} 3\n"));
        assert!(text.contains("db_replica_fallbacks_total 7\n"));
    }

    #[test]
    fn render_has_the_queue_wait_histogram_even_before_a_request() {
        let m = metrics("x");
        let text = m.render(POOL, None);
        assert!(text.contains("# TYPE http_request_queue_seconds histogram\n"));
        assert!(text.contains("http_request_queue_seconds_bucket{le=\"+Inf\"} 0\n"));
        m.observe_queue_wait(Duration::from_micros(300));
        m.observe_queue_wait(Duration::from_millis(3));
        m.observe_queue_wait(Duration::from_secs(6));
        let text = m.render(POOL, None);
        for series in [
            "http_request_queue_seconds_bucket{le=\"0.0005\"} 1\n",
            "http_request_queue_seconds_bucket{le=\"0.001\"} 1\n",
            "http_request_queue_seconds_bucket{le=\"0.005\"} 2\n",
            "http_request_queue_seconds_bucket{le=\"5\"} 2\n",
            "http_request_queue_seconds_bucket{le=\"+Inf\"} 3\n",
            "http_request_queue_seconds_sum 6.0033\n",
            "http_request_queue_seconds_count 3\n",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
        // Nothing went into the per-route duration histogram.
        assert!(!text.contains("http_request_duration_seconds_bucket"));
    }

    #[test]
    fn render_key_requests_has_one_series_per_key() {
        let mut out = String::new();
        Metrics::render_key_requests(&mut out, [("dash", 3), ("prov.job", 0)].into_iter());
        assert!(out.contains("# TYPE http_requests_by_key_total counter\n"));
        assert!(out.contains("http_requests_by_key_total{key=\"dash\"} 3\n"));
        assert!(out.contains("http_requests_by_key_total{key=\"prov.job\"} 0\n"));
    }

    #[test]
    fn replays_and_412s_on_any_route_are_counted() {
        let m = metrics("x");
        m.count_replay();
        m.observe(&Method::Put, 2, 412, Duration::ZERO);
        m.observe(&Method::Delete, 3, 412, Duration::ZERO);
        m.observe(&Method::Put, 2, 200, Duration::ZERO);
        let text = m.render(POOL, None);
        assert!(text.contains("idempotent_replays_total 1\n"));
        assert!(text.contains("http_precondition_failed_total 2\n"));
    }

    #[test]
    fn render_labels_an_unlisted_status_as_other() {
        let m = metrics("x");
        m.observe(&Method::Get, 0, 418, Duration::ZERO);
        assert!(m.render(POOL, None).contains("status=\"other\"} 1"));
    }
}
