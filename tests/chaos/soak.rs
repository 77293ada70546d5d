//! A soak: `SOAK_SECS` (default 60) of every route, mixed, at 64 keep-alive connections
//! against the real binary. Zero 5xx, zero failed connections, zero lost writes (every
//! 201 is there with its last update, every 204 is gone) and a flat memory curve after
//! the warm-up. It prints the figures: requests, rate, statuses, latency, RSS samples.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

const CONNECTIONS: usize = 64;
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
const WARM_UP: Duration = Duration::from_secs(10);
/// Growth allowed from the end of the warm-up to the end of the run.
const RSS_TOLERANCE_KIB: u64 = 1024;

fn soak_duration() -> Duration {
    let secs = std::env::var("SOAK_SECS")
        .ok()
        .filter(|v| !v.is_empty())
        .map_or(60, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("SOAK_SECS={v:?} is not a number of seconds"))
        });
    Duration::from_secs(secs)
}

/// A user as this client last wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Known {
    first: String,
    last: String,
    email: Option<String>,
}

/// What one connection did.
#[derive(Default)]
struct Report {
    /// By operation and status.
    statuses: BTreeMap<(&'static str, u16), usize>,
    latencies_us: Vec<u32>,
    /// The slowest request: how long, when (from the start), what.
    slowest: (Duration, Duration, String),
    /// Answers other than the one the contract calls for (5xx included).
    unexpected: Vec<String>,
    failures: Vec<String>,
    live: HashMap<i64, Known>,
    deleted: Vec<i64>,
}

/// A small xorshift: the mix is pseudo-random but repeatable per connection.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn user_json(k: &Known) -> Value {
    json!({"first_name": k.first, "last_name": k.last, "email": k.email})
}

/// Whether a user in a response is what this client last wrote.
fn matches(body: &Value, id: i64, k: &Known) -> bool {
    body["id"] == id
        && body["first_name"] == k.first.as_str()
        && body["last_name"] == k.last.as_str()
        && body["email"] == json!(k.email)
}

/// One connection's loop: a weighted mix of every route, each answer checked.
fn run_connection(
    addr: std::net::SocketAddr,
    n: usize,
    stop: &AtomicBool,
    run_started: Instant,
) -> Report {
    let mut client = Client::new(addr, Duration::from_secs(10));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (n as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut report = Report::default();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let ids: Vec<i64> = report.live.keys().copied().collect();
        let pick = |rng: &mut Rng| ids[rng.below(ids.len())];
        let roll = if ids.is_empty() { 0 } else { rng.below(100) };
        // (operation, method, target, body, expected status)
        let (op, method, target, body, want): (&'static str, &str, String, Option<Value>, u16) =
            match roll {
                0..25 => {
                    let k = Known {
                        first: format!("soak{n}"),
                        last: format!("c{seq}"),
                        email: (seq % 2 == 0).then(|| format!("soak{n}.{seq}@chaos.example")),
                    };
                    ("create", "POST", "/user".into(), Some(user_json(&k)), 201)
                }
                25..50 => (
                    "read",
                    "GET",
                    format!("/user/{}", pick(&mut rng)),
                    None,
                    200,
                ),
                50..60 => (
                    "patch",
                    "PATCH",
                    format!("/users/{}", pick(&mut rng)),
                    Some(json!({"last_name": format!("p{seq}")})),
                    200,
                ),
                60..65 => {
                    let id = pick(&mut rng);
                    let mut k = report.live[&id].clone();
                    k.last = format!("r{seq}");
                    (
                        "replace",
                        "PUT",
                        format!("/user/{id}"),
                        Some(user_json(&k)),
                        200,
                    )
                }
                65..75 => {
                    let after = pick(&mut rng);
                    (
                        "list",
                        "GET",
                        format!("/users?limit=10&after_id={after}"),
                        None,
                        200,
                    )
                }
                75..80 => match report.live.values().find_map(|k| k.email.clone()) {
                    Some(email) => (
                        "by-email",
                        "GET",
                        format!("/users?email={email}"),
                        None,
                        200,
                    ),
                    None => ("list", "GET", "/users?limit=5&offset=3".into(), None, 200),
                },
                80..88 => (
                    "delete",
                    "DELETE",
                    format!("/user/{}", pick(&mut rng)),
                    None,
                    204,
                ),
                88..92 => (
                    "head",
                    "HEAD",
                    format!("/user/{}", pick(&mut rng)),
                    None,
                    200,
                ),
                92..94 => ("health", "GET", "/health".into(), None, 200),
                94..96 => ("live", "GET", "/health/live".into(), None, 200),
                96..98 => ("metrics", "GET", "/metrics".into(), None, 200),
                _ => ("openapi", "GET", "/openapi.json".into(), None, 200),
            };
        let started = Instant::now();
        let result = match &body {
            Some(b) => client.json(method, &target, b),
            None => client.send(method, &target, &[], None),
        };
        let took = started.elapsed();
        if took > report.slowest.0 {
            report.slowest = (took, started - run_started, format!("{method} {target}"));
        }
        report
            .latencies_us
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        let r = match result {
            Ok(r) => r,
            Err(f) => {
                report.failures.push(format!("{method} {target}: {f}"));
                continue;
            }
        };
        *report.statuses.entry((op, r.status)).or_insert(0) += 1;
        if r.status != want {
            report
                .unexpected
                .push(format!("{method} {target}: {} {}", r.status, r.text()));
            continue;
        }
        let id_in = |t: &str| t.rsplit('/').next().and_then(|s| s.parse::<i64>().ok());
        match op {
            "create" => {
                let user = r.json();
                let id = user["id"].as_i64().expect("a created id");
                let b = body.expect("a create has a body");
                let k = Known {
                    first: b["first_name"].as_str().unwrap().into(),
                    last: b["last_name"].as_str().unwrap().into(),
                    email: b["email"].as_str().map(str::to_owned),
                };
                if !matches(&user, id, &k) {
                    report.unexpected.push(format!("create answered {user}"));
                }
                report.live.insert(id, k);
            }
            "read" | "patch" | "replace" => {
                let id = id_in(&target).expect("an id in the path");
                if let Some(b) = &body {
                    let k = report.live.get_mut(&id).expect("a live id");
                    k.last = b["last_name"].as_str().unwrap().into();
                }
                let user = r.json();
                if !matches(&user, id, &report.live[&id]) {
                    report.unexpected.push(format!(
                        "{method} {target} answered {user}, expected {:?}",
                        report.live[&id]
                    ));
                }
            }
            "by-email" => {
                let users = r.json()["users"].as_array().cloned().unwrap_or_default();
                if users.len() != 1 {
                    report
                        .unexpected
                        .push(format!("{target} found {} users", users.len()));
                }
            }
            "delete" => {
                let id = id_in(&target).expect("an id in the path");
                report.live.remove(&id);
                report.deleted.push(id);
                // Gone at once, for this client too.
                match client.send("GET", &format!("/user/{id}"), &[], None) {
                    Ok(g) if g.status == 404 => {
                        *report.statuses.entry(("read-deleted", 404)).or_insert(0) += 1;
                    }
                    Ok(g) => report.unexpected.push(format!(
                        "GET /user/{id} after its 204: {} {}",
                        g.status,
                        g.text()
                    )),
                    Err(f) => report
                        .failures
                        .push(format!("GET /user/{id} after delete: {f}")),
                }
            }
            _ => {}
        }
    }
    report
}

/// Requests the server itself took longer than `le` seconds over (its duration
/// histogram's `+Inf` bucket less the `le` one, over every route).
fn handled_slower_than(metrics: &str, le: &str) -> u64 {
    let bucket = |le: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("http_request_duration_seconds_bucket{"))
            .filter(|l| l.contains(&format!("le=\"{le}\"}}")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    bucket("+Inf") - bucket(le)
}

#[test]
#[ignore = "a soak of SOAK_SECS (default 60) seconds: run on the release build by tests/chaos/run"]
fn soak_mixes_every_route_at_64_connections_with_no_5xx_no_lost_writes_and_flat_memory() {
    let _serial = serial();
    let duration = soak_duration();

    // Arrange
    let db = fresh_database();
    let mut server = ServerProcess::start(&[("DATABASE_URL", db.url.clone())]);
    let stop = Arc::new(AtomicBool::new(false));
    let addr = server.addr;

    // Act: 64 connections for the whole run; memory sampled every two seconds.
    let started = Instant::now();
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|n| {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("soak-{n}"))
                .spawn(move || run_connection(addr, n, &stop, started))
                .expect("start a soak connection")
        })
        .collect();
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    let mut next = started;
    while started.elapsed() < duration {
        samples.push((started.elapsed(), server.memory().rss_kib));
        next += SAMPLE_EVERY;
        let end = (started + duration).min(next);
        std::thread::sleep(end.saturating_duration_since(Instant::now()));
    }
    stop.store(true, Ordering::SeqCst);
    let reports: Vec<Report> = threads
        .into_iter()
        .map(|t| t.join().expect("a soak connection panicked"))
        .collect();
    let elapsed = started.elapsed();
    samples.push((elapsed, server.memory().rss_kib));
    let peak = server.memory().hwm_kib;

    // Gather
    let mut statuses: BTreeMap<(&str, u16), usize> = BTreeMap::new();
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    let mut latencies: Vec<Duration> = Vec::new();
    let (mut unexpected, mut failures) = (Vec::new(), Vec::new());
    let mut live: HashMap<i64, Known> = HashMap::new();
    let mut deleted = Vec::new();
    let mut slowest = (Duration::ZERO, Duration::ZERO, String::new());
    for r in reports {
        if r.slowest.0 > slowest.0 {
            slowest = r.slowest.clone();
        }
        for ((op, status), n) in r.statuses {
            *statuses.entry((op, status)).or_insert(0) += n;
            *by_status.entry(status).or_insert(0) += n;
        }
        latencies.extend(
            r.latencies_us
                .iter()
                .map(|&us| Duration::from_micros(u64::from(us))),
        );
        unexpected.extend(r.unexpected);
        failures.extend(r.failures);
        live.extend(r.live);
        deleted.extend(r.deleted);
    }
    latencies.sort();
    let requests: usize = by_status.values().sum();
    let server_errors: usize = by_status.range(500..).map(|(_, n)| n).sum();
    let warm = samples
        .iter()
        .find(|(t, _)| *t >= WARM_UP.min(duration / 2))
        .map_or(0, |s| s.1);
    let after_warm_max = samples
        .iter()
        .filter(|(t, _)| *t >= WARM_UP.min(duration / 2))
        .map(|s| s.1)
        .max()
        .unwrap_or(0);
    let rows: HashMap<i64, Known> = db
        .connect()
        .query("SELECT id, first_name, last_name, email FROM users", &[])
        .expect("read the users table")
        .iter()
        .map(|row| {
            (
                row.get(0),
                Known {
                    first: row.get(1),
                    last: row.get(2),
                    email: row.get(3),
                },
            )
        })
        .collect();
    let metrics = client::send(addr, "GET", "/metrics", &[], None)
        .map(|r| r.text())
        .unwrap_or_default();
    server.sigterm();
    let exit = server.wait_exit(Duration::from_secs(12));

    // Report
    let rss: Vec<String> = samples
        .iter()
        .map(|(t, kib)| format!("{}s {}", t.as_secs(), mib(*kib)))
        .collect();
    eprintln!(
        "soak ({} build, {CONNECTIONS} connections, {elapsed:.1?}): {requests} requests, {:.0} req/s, \
         5xx {server_errors}, failed connections {}, unexpected answers {}\n\
         soak statuses: {by_status:?}\nsoak by route: {statuses:?}\n\
         soak latency: p50 {:?}, p90 {:?}, p99 {:?}, max {:?} ({} at {:.1?})\n\
         soak server-side (handler) times over 250 ms: {}, over 1 s: {}\n\
         soak rows: {} live ({} created, {} deleted), table {} rows\n\
         soak RSS: {} (peak {}); growth after {WARM_UP:?}: {:+.1} MiB",
        profile(),
        requests as f64 / elapsed.as_secs_f64(),
        failures.len(),
        unexpected.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or_default(),
        slowest.2,
        slowest.1,
        handled_slower_than(&metrics, "0.25"),
        handled_slower_than(&metrics, "1"),
        live.len(),
        live.len() + deleted.len(),
        deleted.len(),
        rows.len(),
        rss.join(", "),
        mib(peak),
        (after_warm_max as f64 - warm as f64) / 1024.0,
    );

    // Assert: no 5xx, no failure, every answer the contract's.
    assert_eq!(server_errors, 0, "5xx answers: {by_status:?}");
    assert!(
        failures.is_empty(),
        "{} requests failed below HTTP:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        unexpected.is_empty(),
        "{} unexpected answers:\n{}",
        unexpected.len(),
        unexpected
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Assert: no lost writes: the table is exactly what the clients last wrote.
    let lost: Vec<String> = live
        .iter()
        .filter(|(id, k)| rows.get(id) != Some(k))
        .map(|(id, k)| format!("{id}: wrote {k:?}, table has {:?}", rows.get(id)))
        .collect();
    let resurrected: Vec<&i64> = deleted.iter().filter(|id| rows.contains_key(id)).collect();
    let unknown: Vec<&i64> = rows
        .keys()
        .filter(|id| !live.contains_key(id) && !deleted.contains(id))
        .collect();
    assert!(
        lost.is_empty() && resurrected.is_empty() && unknown.is_empty(),
        "lost or stale writes: {lost:?}; deleted but present: {resurrected:?}; \
         rows nobody created: {unknown:?}"
    );

    // Assert: memory flat after the warm-up; a clean stop.
    assert!(
        after_warm_max <= warm + RSS_TOLERANCE_KIB,
        "RSS grew from {} at {WARM_UP:?} to {} afterwards: {}",
        mib(warm),
        mib(after_warm_max),
        rss.join(", ")
    );
    let exit = exit.expect("the server did not exit within 12 s of SIGTERM");
    assert_eq!(exit.code(), Some(0), "exit status after the soak");
}
