//! The database: waiting for PostgreSQL at start-up, the connection pool, and running a
//! query on a pooled connection with one retry where that is provably safe.

pub mod idempotency;
pub mod migrate;
mod session;
mod socket;
pub mod tls;
pub mod users;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use log::{info, warn};
use r2d2::{ManageConnection, Pool, PooledConnection};
use tokio_postgres::error::SqlState;

pub use session::{DbError, Kind, Session, StatementCache};

use crate::error_chain::chain;

/// One database server to connect to: its connection settings (whose `Debug` redacts
/// the password) and the TLS connector built for it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub pg: tokio_postgres::Config,
    pub tls: tls::Connector,
}

/// Where and how to reach PostgreSQL (built by `config` from the environment).
#[derive(Clone, Debug)]
pub struct DbConfig {
    pub primary: Endpoint,
    /// A streaming replica for reads, when one is configured.
    pub replica: Option<Endpoint>,
    pub pool_size: u32,
    pub pool_timeout: Duration,
    pub connect_timeout: Duration,
    /// How long we wait for any answer from the database before giving up on the
    /// connection: what bounds a request when the database hangs.
    pub query_timeout: Duration,
    pub statement_cache: StatementCache,
}

/// Why waiting for the database ended without a connection.
#[derive(Debug)]
pub enum WaitError {
    Database(DbError),
    /// `should_stop` said so (a signal arrived) before the database answered.
    Stopped,
}

/// Connects once, retrying with back-off until `connect_timeout`. Errors that waiting
/// cannot cure (a wrong password, a missing database) end it at once, and so does
/// `should_stop`, checked often, so that a SIGTERM is obeyed even before we serve.
pub fn connect_with_retry(
    cfg: &DbConfig,
    should_stop: impl Fn() -> bool,
) -> Result<Session, WaitError> {
    let deadline = Instant::now() + cfg.connect_timeout;
    let mut delay = Duration::from_millis(100);
    for attempt in 1.. {
        match Session::connect(&cfg.primary, cfg.query_timeout, cfg.statement_cache) {
            Ok(client) => return Ok(client),
            Err(e) if is_final(&e) || Instant::now() + delay > deadline => {
                return Err(WaitError::Database(e));
            }
            Err(e) => {
                let e = chain(&e);
                warn!("database not reachable (attempt {attempt}): {e}; retrying in {delay:?}");
                let until = Instant::now() + delay;
                while Instant::now() < until {
                    if should_stop() {
                        return Err(WaitError::Stopped);
                    }
                    thread::sleep(Duration::from_millis(20).min(delay));
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
        if should_stop() {
            return Err(WaitError::Stopped);
        }
    }
    unreachable!("the loop returns")
}

fn is_final(e: &DbError) -> bool {
    e.code()
        .is_some_and(|c| c.code().starts_with("28") || *c == SqlState::INVALID_CATALOG_NAME)
}

/// Whether a query is safe to run twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Pool figures for `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolStats {
    pub idle: u32,
    pub in_use: u32,
    pub wait_timeouts: u64,
    /// Statements the database did not answer within `DB_QUERY_TIMEOUT_MS`.
    pub query_timeouts: u64,
}

/// The primary's pool, and a replica's when reads are sent to one.
pub struct Db {
    primary: PgPool,
    replica: Option<PgPool>,
    replica_fallbacks: AtomicU64,
    /// Until when (ms since `epoch`) reads skip a replica that just failed, so that an
    /// outage costs one pool timeout, not one per read.
    replica_resting_until: AtomicU64,
    epoch: Instant,
}

/// The least time a connection's check before use is given.
const PING_FLOOR: Duration = Duration::from_millis(100);

/// How long reads go straight to the primary after the replica failed one.
const REPLICA_REST: Duration = Duration::from_secs(5);

impl Db {
    /// Builds the pools without waiting for connections: they are opened in the
    /// background, and a query that finds none in `pool_timeout` fails as
    /// `Kind::Unavailable`.
    pub fn new(cfg: &DbConfig) -> Db {
        Db {
            primary: PgPool::new(&cfg.primary, cfg),
            replica: cfg.replica.as_ref().map(|r| PgPool::new(r, cfg)),
            replica_fallbacks: AtomicU64::new(0),
            replica_resting_until: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Runs `op` on the primary, or for a read on the replica when there is one. A read
    /// the replica cannot serve (down, no connection in time) falls back to the primary.
    pub fn run<T>(
        &self,
        access: Access,
        mut op: impl FnMut(&mut Session) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        if let (Access::Read, Some(replica)) = (access, &self.replica) {
            let now = self.epoch.elapsed().as_millis() as u64;
            if now < self.replica_resting_until.load(Ordering::Relaxed) {
                self.replica_fallbacks.fetch_add(1, Ordering::Relaxed);
                return self.primary.run(access, op);
            }
            match replica.run(Access::Read, &mut op) {
                Err(e) if e.kind() == Kind::Unavailable => {
                    self.replica_fallbacks.fetch_add(1, Ordering::Relaxed);
                    let until = now + REPLICA_REST.as_millis() as u64;
                    self.replica_resting_until.store(until, Ordering::Relaxed);
                    warn!(
                        "replica unavailable, reading from the primary for {REPLICA_REST:?}: {}",
                        chain(&e)
                    );
                }
                other => return other,
            }
        }
        self.primary.run(access, op)
    }

    /// A lookup that must see the caller's own writes: what the replica does not have
    /// (yet) is looked up on the primary, so the `Location` of a user just created
    /// always answers, whatever the replication lag.
    pub fn find<T>(
        &self,
        mut op: impl FnMut(&mut Session) -> Result<Option<T>, DbError>,
    ) -> Result<Option<T>, DbError> {
        match self.run(Access::Read, &mut op)? {
            None if self.replica.is_some() => self.primary.run(Access::Read, op),
            found => Ok(found),
        }
    }

    /// Answers whether the primary answers a trivial query.
    pub fn ping(&self) -> Result<(), DbError> {
        self.primary
            .run(Access::Read, |c| c.simple_query("SELECT 1").map(drop))
    }

    pub fn stats(&self) -> PoolStats {
        self.primary.stats()
    }

    /// The replica's pool figures and how many reads fell back to the primary.
    pub fn replica_stats(&self) -> Option<(PoolStats, u64)> {
        let r = self.replica.as_ref()?;
        Some((r.stats(), self.replica_fallbacks.load(Ordering::Relaxed)))
    }
}

/// One pool and what it needs to run queries well.
struct PgPool {
    pool: Pool<Manager>,
    pool_timeout: Duration,
    suspect: Arc<AtomicU64>,
    wait_timeouts: AtomicU64,
    query_timeouts: AtomicU64,
}

impl PgPool {
    fn new(endpoint: &Endpoint, cfg: &DbConfig) -> PgPool {
        let suspect = Arc::new(AtomicU64::new(0));
        let manager = Manager {
            endpoint: endpoint.clone(),
            query_timeout: cfg.query_timeout,
            statement_cache: cfg.statement_cache,
            suspect: Arc::clone(&suspect),
        };
        let pool = Pool::builder()
            .max_size(cfg.pool_size)
            .connection_timeout(cfg.pool_timeout)
            // `checkout` checks, within the request's budget; r2d2's own check would ping
            // every idle connection in turn, each with its own timeout.
            .test_on_check_out(false)
            .error_handler(Box::new(WarnOnError))
            .build_unchecked(manager);
        PgPool {
            pool,
            pool_timeout: cfg.pool_timeout,
            suspect,
            wait_timeouts: AtomicU64::new(0),
            query_timeouts: AtomicU64::new(0),
        }
    }

    /// Runs `op` on a pooled connection. A connection failure marks every idle
    /// connection suspect (they are pinged before their next use), and a read is retried
    /// once on another connection. A write never is: the server's "terminating
    /// connection" (57P01) can arrive in the same read as the statement's own results,
    /// and the driver then reports it as the statement's error, so it does not prove the
    /// write did not commit. The caller gets `Kind::Unavailable` and decides. Nor is a
    /// statement that timed out: the database is hung or overwhelmed, and the request's
    /// time is spent.
    fn run<T>(
        &self,
        access: Access,
        mut op: impl FnMut(&mut Session) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut conn = self.checkout()?;
        match self.attempt(&mut conn, &mut op) {
            Err(e) if is_retryable(&e, access) => {
                drop(conn);
                info!("retrying a read on a fresh connection after: {}", chain(&e));
                let mut conn = self.checkout()?;
                self.attempt(&mut conn, op)
            }
            other => other,
        }
    }

    /// Runs `op` once, noting a connection failure (every idle connection is then
    /// suspect) and a timeout.
    fn attempt<T>(
        &self,
        conn: &mut PooledConnection<Manager>,
        mut op: impl FnMut(&mut Session) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let result = op(&mut conn.session);
        if let Err(e) = &result {
            if is_connection_failure(e) {
                self.suspect.fetch_add(1, Ordering::Relaxed);
            }
            if matches!(e, DbError::TimedOut(_)) {
                self.query_timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// A connection within `DB_POOL_TIMEOUT_MS`, all told. One that may have died with
    /// another (see `suspect`) is pinged first, in what is left of that time; one that
    /// fails is dropped and the next is tried. When the database hangs, a request so
    /// pays the pool timeout once, not a ping timeout per idle connection.
    fn checkout(&self) -> Result<PooledConnection<Manager>, DbError> {
        let deadline = Instant::now() + self.pool_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut conn = self.pool.get_timeout(left).map_err(|e| {
                self.wait_timeouts.fetch_add(1, Ordering::Relaxed);
                DbError::from(e)
            })?;
            let generation = self.suspect.load(Ordering::Relaxed);
            if conn.checked_at >= generation {
                return Ok(conn);
            }
            // Less than the floor would fail on a healthy database and drop a good
            // connection; so a checkout may overrun by that much, once.
            let left = deadline.saturating_duration_since(Instant::now());
            match conn.session.ping(left.max(PING_FLOOR)) {
                Ok(()) => {
                    conn.checked_at = generation;
                    return Ok(conn);
                }
                // The failed session is broken now, so the pool drops it when it returns.
                Err(e) if Instant::now() >= deadline => {
                    self.wait_timeouts.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
                Err(e) => warn!("a pooled connection failed its check: {}", chain(&e)),
            }
        }
    }

    fn stats(&self) -> PoolStats {
        let s = self.pool.state();
        PoolStats {
            idle: s.idle_connections,
            in_use: s.connections - s.idle_connections,
            wait_timeouts: self.wait_timeouts.load(Ordering::Relaxed),
            query_timeouts: self.query_timeouts.load(Ordering::Relaxed),
        }
    }
}

/// A failure a fresh connection may cure in time (not a timeout), for a statement safe
/// to run again: a read, or anything that was never sent.
fn is_retryable(e: &DbError, access: Access) -> bool {
    match e {
        DbError::Stale(_) => true,
        DbError::TimedOut(_) => false,
        _ => access == Access::Read && is_connection_failure(e),
    }
}

/// A failure of the connection rather than of the statement.
fn is_connection_failure(e: &DbError) -> bool {
    use std::error::Error as _;
    match e {
        DbError::Pg(e) => {
            let io = e.code().is_none() && e.source().is_some_and(|s| s.is::<std::io::Error>());
            e.is_closed() || io || is_session_ended(e)
        }
        DbError::Lost(_) | DbError::Stale(_) | DbError::TimedOut(_) | DbError::Connect(_) => true,
        // No connection was had, so none is suspect (and nothing ran).
        DbError::Pool(_) => false,
    }
}

/// The server ended the session (shutdown, crash recovery) before our statement ran.
fn is_session_ended(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == SqlState::ADMIN_SHUTDOWN
            || *c == SqlState::CRASH_SHUTDOWN
            || *c == SqlState::CANNOT_CONNECT_NOW
    })
}

/// A pooled connection and the suspicion generation it was last known good at.
///
/// The session is boxed because r2d2 moves a connection by value on every checkout and
/// return, and a session (driver buffers, statements) is over a kilobyte: copying
/// it cost a `POST` some 2 000 instructions (callgrind), a pointer costs nothing.
pub struct Conn {
    session: Box<Session>,
    checked_at: u64,
}

/// Opens sessions for r2d2. Their check before use is `PgPool::checkout`'s.
struct Manager {
    endpoint: Endpoint,
    query_timeout: Duration,
    statement_cache: StatementCache,
    suspect: Arc<AtomicU64>,
}

impl ManageConnection for Manager {
    type Connection = Conn;
    type Error = DbError;

    fn connect(&self) -> Result<Conn, DbError> {
        let checked_at = self.suspect.load(Ordering::Relaxed);
        Ok(Conn {
            session: Box::new(Session::connect(
                &self.endpoint,
                self.query_timeout,
                self.statement_cache,
            )?),
            checked_at,
        })
    }

    fn is_valid(&self, _conn: &mut Conn) -> Result<(), DbError> {
        Ok(())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.session.is_broken()
    }
}

/// r2d2 reports background connection failures here; during an outage that is one
/// line per attempt, at warn rather than error since the pool recovers by itself.
#[derive(Debug)]
struct WarnOnError;

impl r2d2::HandleError<DbError> for WarnOnError {
    fn handle_error(&self, e: DbError) {
        warn!("database connection failed: {}", chain(&e));
    }
}
