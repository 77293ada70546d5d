//! What the chaos tests share: the harness (re-exported from `common`), the server binary
//! as a child process, a client that knows how much of a response arrived, a ledger of
//! create requests checked against the table, a load of creating clients, and readings of
//! `/metrics` and `/proc/<pid>/status`.

pub use crate::common::*;
pub use serde_json::{Value, json};

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The server binary cargo built for this test run (debug under `cargo test`, release
/// under `cargo test --release`).
pub const BIN: &str = env!("CARGO_BIN_EXE_user-api");

/// The build profile of this test binary, and so of [`BIN`].
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// One chaos test at a time: they measure latency and memory, and each loads the two
/// cores on its own; running them side by side would only make the figures meaningless.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------
// The server as a child process

/// `user-api serve` in the background, in a directory of its own (so no `.env` leaks
/// in), its stderr kept in a file. Killed on drop if still running.
pub struct ServerProcess {
    child: Child,
    pub addr: SocketAddr,
    dir: TempDir,
}

impl ServerProcess {
    /// Starts the binary with exactly `vars` (plus `PATH` and a `BIND` on a free port of
    /// 127.0.0.1) and waits until `/health/ready` answers 200.
    pub fn start(vars: &[(&str, String)]) -> ServerProcess {
        ServerProcess::start_with(vars, |addr| {
            let r = client::send(addr, "GET", "/health/ready", &[], None);
            r.is_ok_and(|r| r.status == 200)
        })
    }

    /// As [`ServerProcess::start`], ready when `is_ready` says so (an HTTPS server does
    /// not answer the plain-HTTP probe).
    pub fn start_with(
        vars: &[(&str, String)],
        mut is_ready: impl FnMut(SocketAddr) -> bool,
    ) -> ServerProcess {
        let mut last = String::new();
        for _ in 0..3 {
            let dir = TempDir::new("user-api-chaos");
            let port = free_port();
            let stderr = File::create(dir.path().join("stderr")).expect("create the stderr file");
            let child = Command::new(BIN)
                .arg("serve")
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
                .env("BIND", format!("127.0.0.1:{port}"))
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("start user-api serve");
            let mut server = ServerProcess {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                dir,
            };
            let ready = poll_until(Duration::from_secs(60), || {
                if server.child.try_wait().ok().flatten().is_some() {
                    return Some(false);
                }
                is_ready(server.addr).then_some(true)
            });
            if ready == Some(true) {
                return server;
            }
            // Lost the port to another process, or it failed: try again, then report.
            last = server.stderr();
        }
        panic!("user-api serve did not become ready; stderr: {last}");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// The server's memory now.
    pub fn memory(&self) -> Memory {
        Memory::of(self.pid())
    }

    /// Sends SIGTERM with the `kill` command.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.pid());
    }

    /// Waits up to `timeout` for the process to end.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll_until(timeout, || self.child.try_wait().ok().flatten())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Resident memory of a process, from `/proc/<pid>/status`, in KiB.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most ever resident.
    pub hwm_kib: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        Memory {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
        }
    }
}

/// KiB as MiB with one decimal, for messages.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------
// A client that tells a cut-off response from one that never started

/// How a request failed below HTTP.
#[derive(Debug)]
pub enum Failure {
    /// No connection: refused, or it timed out.
    Connect(io::Error),
    /// The request could not be written (the server had closed the connection).
    Write(io::Error),
    /// The response did not arrive whole; `bytes` of it did.
    Read { bytes: usize, error: io::Error },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect failed: {e}"),
            Failure::Write(e) => write!(f, "writing the request failed: {e}"),
            Failure::Read { bytes, error } => {
                write!(
                    f,
                    "reading the response failed after {bytes} bytes: {error}"
                )
            }
        }
    }
}

impl Failure {
    /// Bytes of a response that arrived before the failure.
    pub fn bytes_received(&self) -> usize {
        match self {
            Failure::Read { bytes, .. } => *bytes,
            _ => 0,
        }
    }
}

impl Failure {
    /// Whether the server closed or reset the connection (rather than leaving the
    /// client waiting until its timeout).
    pub fn closed_by_server(&self) -> bool {
        let e = match self {
            Failure::Connect(e) | Failure::Write(e) => e,
            Failure::Read { error, .. } => error,
        };
        !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    }
}

/// Whether some line of `log` carries request id `id` (as a whole word: `a-1` is not
/// found in `a-12`).
pub fn logs_request_id(log: &str, id: &str) -> bool {
    let is_id_char = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
    log.match_indices(id).any(|(at, _)| {
        let before = log[..at].chars().next_back();
        let after = log[at + id.len()..].chars().next();
        !before.is_some_and(is_id_char) && !after.is_some_and(is_id_char)
    })
}

/// One keep-alive client over the harness's [`HttpConnection`]: connects when it has no
/// connection, drops it after a failure or a `Connection: close`, and says how a request
/// failed.
pub struct Client {
    addr: SocketAddr,
    conn: Option<HttpConnection>,
    timeout: Duration,
}

impl Client {
    /// A client whose every read or write may block for at most `timeout`.
    pub fn new(addr: SocketAddr, timeout: Duration) -> Client {
        Client {
            addr,
            conn: None,
            timeout,
        }
    }

    /// Whether the next request reuses an open connection.
    #[allow(dead_code)]
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Sends one request (adding `Host` and `Content-Length`) and reads its response.
    pub fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<HttpResponse, Failure> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(
                HttpConnection::open_within(self.addr, self.timeout).map_err(Failure::Connect)?,
            ),
        };
        if let Err(e) = conn.write_request(method, target, headers, body) {
            self.conn = None;
            return Err(Failure::Write(e));
        }
        match conn.read_response(method == "HEAD") {
            Ok(r) => {
                if r.closes_connection() {
                    self.conn = None;
                }
                Ok(r)
            }
            Err(error) => {
                let bytes = conn.bytes_received();
                self.conn = None;
                Err(Failure::Read { bytes, error })
            }
        }
    }

    /// A JSON request.
    pub fn json(
        &mut self,
        method: &str,
        target: &str,
        body: &Value,
    ) -> Result<HttpResponse, Failure> {
        let bytes = serde_json::to_vec(body).expect("serialise the body");
        self.send(
            method,
            target,
            &[("Content-Type", "application/json")],
            Some(&bytes),
        )
    }
}

/// Reads one response from a socket of the test's own (or bytes already read).
pub use crate::common::client::read_response_from as read_response;

// ---------------------------------------------------------------------------------------
// The ledger: what each create request was told, checked against the table

/// What one `POST /user` was told.
#[derive(Debug)]
pub struct Attempt {
    /// The `first_name`, unique to this request: how its row is found.
    pub token: String,
    pub started: Instant,
    pub took: Duration,
    pub result: Result<HttpResponse, Failure>,
}

impl Attempt {
    pub fn status(&self) -> Option<u16> {
        self.result.as_ref().ok().map(|r| r.status)
    }

    pub fn finished(&self) -> Instant {
        self.started + self.took
    }

    /// The id a 201 gave.
    pub fn created_id(&self) -> Option<i64> {
        let r = self.result.as_ref().ok().filter(|r| r.status == 201)?;
        Some(r.json()["id"].as_i64().expect("a 201 has an integer id"))
    }

    pub fn describe(&self) -> String {
        match &self.result {
            Ok(r) => format!(
                "{} after {:?}: {} {}",
                self.token,
                self.took,
                r.status,
                r.text()
            ),
            Err(f) => format!("{} after {:?}: {f}", self.token, self.took),
        }
    }
}

/// How a finished create request counts when the table is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Its row must exist exactly once, with the id it was told.
    Exists(i64),
    /// Its row must not exist.
    Absent,
    /// Nobody can know (a 503 or a broken connection): at most one row.
    Either,
}

/// The body of a create request identified by `token`; every other one has an email.
pub fn create_body(token: &str, tag: &str, seq: u64) -> Value {
    let email = (seq % 2 == 1).then(|| format!("{token}@chaos.example"));
    json!({"first_name": token, "last_name": tag, "email": email})
}

/// What the table held against what the clients were told.
#[derive(Debug, Default)]
pub struct RowCheck {
    pub confirmed: usize,
    pub absent_as_told: usize,
    pub ambiguous_present: usize,
    pub ambiguous_absent: usize,
}

/// Checks the `users` table of `db` against the attempts: each `Exists` row exactly once
/// with its id, no row for an `Absent` one, at most one for an `Either` one, and no row
/// that no attempt accounts for. Panics with every discrepancy.
pub fn check_rows(
    db: &mut postgres::Client,
    attempts: &[Attempt],
    expect: impl Fn(&Attempt) -> Expect,
) -> RowCheck {
    let mut rows: HashMap<String, Vec<i64>> = HashMap::new();
    for row in db
        .query("SELECT id, first_name FROM users", &[])
        .expect("read the users table")
    {
        rows.entry(row.get(1)).or_default().push(row.get(0));
    }
    let mut check = RowCheck::default();
    let mut problems = Vec::new();
    for a in attempts {
        let found = rows.remove(&a.token).unwrap_or_default();
        match (expect(a), found.as_slice()) {
            (Expect::Exists(id), [one]) if *one == id => check.confirmed += 1,
            (Expect::Absent, []) => check.absent_as_told += 1,
            (Expect::Either, []) => check.ambiguous_absent += 1,
            (Expect::Either, [_]) => check.ambiguous_present += 1,
            (want, found) => problems.push(format!(
                "{}: expected {want:?}, the table has ids {found:?}",
                a.describe()
            )),
        }
    }
    for (token, ids) in &rows {
        problems.push(format!(
            "row(s) {ids:?} with first_name {token:?}: no client was told about them"
        ));
    }
    assert!(
        problems.is_empty(),
        "{} discrepancies between the table and what clients were told:\n{}",
        problems.len(),
        problems.join("\n")
    );
    check
}

/// The usual reading of an attempt: 201 exists, a 4xx other than 408 and 429 is absent
/// (these were refused before any write), anything else is unknowable.
pub fn expect_by_status(a: &Attempt) -> Expect {
    match (a.created_id(), a.status()) {
        (Some(id), _) => Expect::Exists(id),
        (None, Some(400 | 401 | 409 | 413 | 415 | 429)) => Expect::Absent,
        _ => Expect::Either,
    }
}

// ---------------------------------------------------------------------------------------
// A load of clients creating users

/// Progress a load reports while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub attempts: AtomicUsize,
    pub created: AtomicUsize,
    pub unavailable: AtomicUsize,
}

/// `threads` clients, each on a keep-alive connection, creating users one after another
/// until stopped.
pub struct Load {
    pub progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Attempt>>>,
}

impl Load {
    /// Starts the clients. Each request may block at most `timeout` on a read or write;
    /// a thread ends by itself when `end_on_refused` and the connection is refused (the
    /// listener is gone).
    pub fn start(
        addr: SocketAddr,
        threads: usize,
        tag: &str,
        timeout: Duration,
        end_on_refused: bool,
    ) -> Load {
        let progress = Arc::new(Progress::default());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|t| {
                let (progress, stop, tag) =
                    (Arc::clone(&progress), Arc::clone(&stop), tag.to_owned());
                std::thread::Builder::new()
                    .name(format!("load-{t}"))
                    .spawn(move || {
                        let mut client = Client::new(addr, timeout);
                        let mut attempts = Vec::new();
                        for seq in 0u64.. {
                            if stop.load(Ordering::SeqCst) {
                                break;
                            }
                            let token = format!("{tag}-{t}-{seq}");
                            let body = create_body(&token, &tag, seq);
                            let started = Instant::now();
                            // The token is the request id too, so the access log can be
                            // searched for what the server did with each request.
                            let bytes = serde_json::to_vec(&body).expect("serialise the body");
                            let result = client.send(
                                "POST",
                                "/user",
                                &[
                                    ("Content-Type", "application/json"),
                                    ("X-Request-Id", &token),
                                ],
                                Some(&bytes),
                            );
                            let took = started.elapsed();
                            let refused = matches!(&result, Err(Failure::Connect(e))
                                if e.kind() == io::ErrorKind::ConnectionRefused);
                            progress.attempts.fetch_add(1, Ordering::SeqCst);
                            match result.as_ref().map(|r| r.status) {
                                Ok(201) => progress.created.fetch_add(1, Ordering::SeqCst),
                                Ok(503) => progress.unavailable.fetch_add(1, Ordering::SeqCst),
                                _ => 0,
                            };
                            attempts.push(Attempt {
                                token,
                                started,
                                took,
                                result,
                            });
                            if refused && end_on_refused {
                                break;
                            }
                        }
                        attempts
                    })
                    .expect("start a load thread")
            })
            .collect();
        Load {
            progress,
            stop,
            threads,
        }
    }

    /// Waits until `done` says so, or panics after `timeout` naming `what`.
    pub fn wait_for(&self, what: &str, timeout: Duration, done: impl Fn(&Progress) -> bool) {
        let reached = poll_until(timeout, || done(&self.progress).then_some(()));
        assert!(
            reached.is_some(),
            "the load did not reach {what} within {timeout:?}: {:?}",
            self.progress
        );
    }

    /// Stops the clients and returns every attempt, in no particular order.
    pub fn stop(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }

    /// Waits for the clients to end by themselves.
    pub fn join(self) -> Vec<Attempt> {
        self.threads
            .into_iter()
            .flat_map(|t| t.join().expect("a load thread panicked"))
            .collect()
    }
}

/// Counts of each status (and of each kind of failure), for messages and reports.
pub fn histogram(attempts: &[Attempt]) -> BTreeMap<String, usize> {
    let mut h = BTreeMap::new();
    for a in attempts {
        let key = match &a.result {
            Ok(r) => r.status.to_string(),
            Err(Failure::Connect(_)) => "connect-failed".into(),
            Err(Failure::Write(_)) => "write-failed".into(),
            Err(Failure::Read { bytes: 0, .. }) => "no-response".into(),
            Err(Failure::Read { .. }) => "cut-off-response".into(),
        };
        *h.entry(key).or_insert(0) += 1;
    }
    h
}

// ---------------------------------------------------------------------------------------
// Readings

/// The value of the sample whose name and labels are exactly `series` (for example
/// `db_pool_wait_timeouts_total` or `db_pool_connections{state="idle"}`).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Scrapes `/metrics` and reads one series; panics when it is missing.
pub fn scrape(addr: SocketAddr, series: &str) -> f64 {
    let r = client::send(addr, "GET", "/metrics", &[], None).expect("GET /metrics");
    assert_eq!(r.status, 200, "/metrics: {}", r.text());
    metric(&r.text(), series).unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// `Retry-After` as whole seconds; panics when it is missing or not a number.
pub fn retry_after(r: &HttpResponse, context: &str) -> u64 {
    let v = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("{context}: no Retry-After on the {}", r.status));
    v.parse()
        .unwrap_or_else(|_| panic!("{context}: Retry-After {v:?} is not whole seconds"))
}

/// An error body of API.md: a JSON object with a non-empty `error` and nothing else but
/// an optional `field`.
pub fn assert_error_body(r: &HttpResponse, context: &str) {
    let body = r.json();
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("{context}: the error body is not an object: {body}"));
    assert!(
        obj.get("error")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty()),
        "{context}: no error sentence in {body}"
    );
    assert!(
        obj.keys().all(|k| k == "error" || k == "field"),
        "{context}: unexpected keys in {body}"
    );
}

/// Percentile `p` (0 to 100) of some durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
