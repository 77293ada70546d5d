//! What one query's round trip costs the client, three ways, to show where a request's
//! CPU goes (docs/performance.md, "What a query costs the client, and the runtime we
//! dropped"). A measuring tool for the bench, not part of the shipped binary.
//!
//! ```text
//! round_trip DATABASE_URL [SECONDS] [CONNECTIONS]
//! ```
//!
//! Runs `SELECT … FROM users WHERE id = $1` (the statement behind `GET /user/{id}`, ids
//! 1..=100 000) over CONNECTIONS connections (16) for SECONDS (5) in each mode, and
//! prints queries per second, this process's CPU per query and its context switches per
//! query:
//!
//! - `session`: one thread per connection, each on `user_api::db::Session` as a worker
//!   uses it (tokio-postgres polled on the calling thread, the wait for each answer
//!   inside a read bounded by the deadline, prepared statements);
//! - `blocking`: one thread per connection on a plain blocking socket, speaking the
//!   extended protocol directly (Bind, Execute, Sync; read until ReadyForQuery): the
//!   least a thread that waits for each answer can cost, with no async runtime at all;
//! - `async`: every connection on one thread (a current-thread tokio runtime, a task per
//!   connection, tokio-postgres with a prepared statement), as an async server's worker
//!   runs them: the thread sleeps only when no connection has an answer waiting.
//!
//! The database must allow password (SCRAM or MD5) or trust authentication over TCP
//! without TLS, as `examples/pg.rs` sets it up.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::{backend, frontend};
use postgres_protocol::{IsNull, Oid};
use tokio_postgres::config::Host;
use tokio_postgres::types::Type;

use user_api::db::tls::Connector;
use user_api::db::{Endpoint, Session, StatementCache};

const SQL: &str =
    "SELECT id, first_name, last_name, email, created_at, updated_at FROM users WHERE id = $1";
const USERS: u64 = 100_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .ok_or("usage: round_trip DATABASE_URL [SECONDS] [CONNECTIONS]")?;
    let secs: u64 = args.get(1).map_or(Ok(5), |s| s.parse())?;
    let conns: usize = args.get(2).map_or(Ok(16), |s| s.parse())?;
    let pg: tokio_postgres::Config = url.parse()?;
    let run = Duration::from_secs(secs);

    println!("mode      queries/s   client µs/query   switches/query");
    for mode in ["session", "blocking", "async"] {
        let (queries, cpu, switches) = match mode {
            "session" => measure(|| threads(&pg, conns, run, session_loop))?,
            "blocking" => measure(|| threads(&pg, conns, run, blocking_loop))?,
            _ => measure(|| multiplexed(&pg, conns, run))?,
        };
        println!(
            "{mode:9} {:9.0}   {:15.1}   {:14.2}",
            queries as f64 / run.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / queries as f64,
            switches as f64 / queries as f64,
        );
    }
    Ok(())
}

type Outcome = Result<u64, Box<dyn std::error::Error + Send + Sync>>;

/// Runs `work` (which returns the queries it made) and measures this process's CPU time
/// and context switches while it runs.
fn measure(
    work: impl FnOnce() -> Outcome,
) -> Result<(u64, Duration, u64), Box<dyn std::error::Error>> {
    let (cpu0, sw0) = (process_cpu()?, process_switches()?);
    let queries = work().map_err(|e| e.to_string())?;
    let (cpu1, sw1) = (process_cpu()?, process_switches()?);
    Ok((queries, cpu1 - cpu0, sw1 - sw0))
}

/// utime + stime of the whole process (`/proc/self/stat`, in clock ticks of 10 ms).
fn process_cpu() -> io::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    Ok(Duration::from_millis(10 * f.iter().sum::<u64>()))
}

/// Context switches of every thread of the process, live and ended. A thread's entry
/// leaves `/proc/self/task` when it ends, so the measuring threads add their own count
/// to `EXITED_SWITCHES` just before (see `threads`).
fn process_switches() -> io::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let status = std::fs::read_to_string(task?.path().join("status"))?;
        total += switches_in(&status);
    }
    Ok(total + EXITED_SWITCHES.load(Ordering::Relaxed))
}

static EXITED_SWITCHES: AtomicU64 = AtomicU64::new(0);

fn switches_in(status: &str) -> u64 {
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

/// A cheap id sequence spread over the seeded users.
fn next_id(state: &mut u64) -> i64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*state >> 33) % USERS + 1) as i64
}

/// `conns` threads, each running `body` on its own connection until `run` has passed.
fn threads(
    pg: &tokio_postgres::Config,
    conns: usize,
    run: Duration,
    body: fn(&tokio_postgres::Config, &AtomicBool, u64) -> Outcome,
) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..conns)
        .map(|n| {
            let (pg, stop) = (pg.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let result = body(&pg, &stop, n as u64 + 1);
                // This thread's switches, before it ends and its /proc entry goes.
                if let Ok(s) = std::fs::read_to_string("/proc/thread-self/status") {
                    EXITED_SWITCHES.fetch_add(switches_in(&s), Ordering::Relaxed);
                }
                result
            })
        })
        .collect();
    std::thread::sleep(run);
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for h in handles {
        total += h.join().map_err(|_| "a thread panicked")??;
    }
    Ok(total)
}

fn session_loop(pg: &tokio_postgres::Config, stop: &AtomicBool, seed: u64) -> Outcome {
    let endpoint = Endpoint {
        pg: pg.clone(),
        tls: Connector::new(&Default::default())?,
    };
    let mut session = Session::connect(&endpoint, Duration::from_secs(5), StatementCache::On)?;
    let (mut state, mut n) = (seed, 0);
    while !stop.load(Ordering::Relaxed) {
        let id = next_id(&mut state);
        session.query_typed_one(SQL, &[(&id, Type::INT8)])?;
        n += 1;
    }
    Ok(n)
}

fn blocking_loop(pg: &tokio_postgres::Config, stop: &AtomicBool, seed: u64) -> Outcome {
    let mut c = Blocking::connect(pg)?;
    c.prepare("s", SQL, &[Type::INT8.oid()])?;
    let (mut state, mut n) = (seed, 0);
    while !stop.load(Ordering::Relaxed) {
        let id = next_id(&mut state);
        let rows = c.execute("s", &id.to_be_bytes())?;
        if rows != 1 {
            return Err(format!("user {id}: {rows} rows").into());
        }
        n += 1;
    }
    Ok(n)
}

fn multiplexed(pg: &tokio_postgres::Config, conns: usize, run: Duration) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for n in 0..conns {
            let (client, connection) = pg.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            let stop = Arc::clone(&stop);
            tasks.push(tokio::spawn(async move {
                let statement = client.prepare_typed(SQL, &[Type::INT8]).await?;
                let (mut state, mut count) = (n as u64 + 1, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let id = next_id(&mut state);
                    client.query_one(&statement, &[&id]).await?;
                    count += 1;
                }
                Ok::<u64, tokio_postgres::Error>(count)
            }));
        }
        tokio::time::sleep(run).await;
        stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for t in tasks {
            total += t.await??;
        }
        Ok(total)
    })
}

/// A connection on a blocking socket that speaks just enough of the protocol.
struct Blocking {
    socket: TcpStream,
    out: BytesMut,
    input: BytesMut,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

impl Blocking {
    fn connect(pg: &tokio_postgres::Config) -> Result<Blocking, Error> {
        let host = match pg.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            _ => return Err("a TCP host is needed".into()),
        };
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        let socket = TcpStream::connect((host.as_str(), port))?;
        socket.set_nodelay(true)?;
        socket.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut c = Blocking {
            socket,
            out: BytesMut::new(),
            input: BytesMut::with_capacity(8192),
        };
        let user = pg.get_user().ok_or("no user")?;
        let db = pg.get_dbname().unwrap_or(user);
        frontend::startup_message([("user", user), ("database", db)], &mut c.out)?;
        c.send()?;
        let password = pg.get_password().unwrap_or_default();
        let mut scram = None;
        loop {
            match c.next()? {
                backend::Message::AuthenticationOk => {}
                backend::Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password, &mut c.out)?;
                    c.send()?;
                }
                backend::Message::AuthenticationMd5Password(body) => {
                    let hash = md5_hash(user.as_bytes(), password, body.salt());
                    frontend::password_message(hash.as_bytes(), &mut c.out)?;
                    c.send()?;
                }
                backend::Message::AuthenticationSasl(_) => {
                    let s = sasl::ScramSha256::new(password, sasl::ChannelBinding::unsupported());
                    frontend::sasl_initial_response(sasl::SCRAM_SHA_256, s.message(), &mut c.out)?;
                    c.send()?;
                    scram = Some(s);
                }
                backend::Message::AuthenticationSaslContinue(body) => {
                    let s = scram.as_mut().ok_or("SASL out of turn")?;
                    s.update(body.data())?;
                    frontend::sasl_response(s.message(), &mut c.out)?;
                    c.send()?;
                }
                backend::Message::AuthenticationSaslFinal(body) => {
                    scram
                        .as_mut()
                        .ok_or("SASL out of turn")?
                        .finish(body.data())?;
                }
                backend::Message::ReadyForQuery(_) => return Ok(c),
                backend::Message::ErrorResponse(_) => return Err("connection refused".into()),
                _ => {}
            }
        }
    }

    fn prepare(&mut self, name: &str, sql: &str, types: &[Oid]) -> Result<(), Error> {
        frontend::parse(name, sql, types.iter().copied(), &mut self.out)?;
        frontend::sync(&mut self.out);
        self.send()?;
        self.until_ready().map(drop)
    }

    /// Runs the prepared statement `name` with one binary parameter; returns its rows.
    fn execute(&mut self, name: &str, param: &[u8]) -> Result<u64, Error> {
        frontend::bind(
            "",
            name,
            [1],
            [param],
            |p, buf| {
                buf.extend_from_slice(p);
                Ok(IsNull::No)
            },
            [1],
            &mut self.out,
        )
        .map_err(|_| "bind")?;
        frontend::execute("", 0, &mut self.out)?;
        frontend::sync(&mut self.out);
        self.send()?;
        self.until_ready()
    }

    fn until_ready(&mut self) -> Result<u64, Error> {
        let mut rows = 0;
        loop {
            match self.next()? {
                backend::Message::DataRow(_) => rows += 1,
                backend::Message::ErrorResponse(_) => return Err("the statement failed".into()),
                backend::Message::ReadyForQuery(_) => return Ok(rows),
                _ => {}
            }
        }
    }

    fn send(&mut self) -> io::Result<()> {
        self.socket.write_all(&self.out)?;
        self.out.clear();
        Ok(())
    }

    /// The next message, reading (and so blocking) only when none is buffered.
    fn next(&mut self) -> io::Result<backend::Message> {
        loop {
            if let Some(m) = backend::Message::parse(&mut self.input)? {
                return Ok(m);
            }
            let mut chunk = [0u8; 8192];
            let n = self.socket.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.input.extend_from_slice(&chunk[..n]);
        }
    }
}
