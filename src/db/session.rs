//! One connection to PostgreSQL, used synchronously, with a deadline on every exchange.
//!
//! The `postgres` crate's blocking client has no client-side timeout: a database that
//! hangs while its kernel still acknowledges every packet (a stopped process, a stuck
//! host) holds the calling thread for as long as it hangs, and `statement_timeout` cannot
//! help because nothing on that side runs. So we drive `tokio-postgres` (what `postgres`
//! wraps) ourselves, the same way: a current-thread runtime per connection, entered only
//! while a statement runs, polling the connection and the statement together. Every statement is bounded by `DB_QUERY_TIMEOUT_MS`; past it
//! the session is broken and the pool drops it, which closes the socket.
//!
//! Each session also keeps the statements it prepared (unless the cache is off, for a
//! pooler that cannot follow named statements): PostgreSQL then parses and plans a
//! statement once per connection instead of once per request.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_postgres::error::Severity;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{
    AsyncMessage, Client, Connection, Row, SimpleQueryMessage, Socket, Statement,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::Endpoint;

/// Whether a session prepares each statement once and reuses it (`DB_STATEMENT_CACHE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementCache {
    /// Named statements, prepared on first use and kept for the connection's life.
    On,
    /// Every statement unnamed, parsed and planned each time, in one round trip: what
    /// PgBouncer in transaction mode before 1.21 needs, since a later transaction may
    /// run on a server connection that never saw the statement.
    Off,
}

/// The stream under a connection: TLS when it was negotiated, else the plain socket (one
/// type either way, so that `sslmode=prefer` needs no second code path).
type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// Why a statement (or a connection attempt) failed.
#[derive(Debug)]
pub enum DbError {
    /// The server refused it or the driver failed: see `tokio_postgres::Error`.
    Pg(tokio_postgres::Error),
    /// The connection failed or the server ended it (any FATAL, whatever its SQLSTATE)
    /// after the statement was handed over. What the statement did is unknown.
    Lost(tokio_postgres::Error),
    /// The connection was found dead before the statement was sent (the server ended an
    /// idle session, or it broke earlier: `None`): safe to run again, even a write.
    Stale(Option<tokio_postgres::Error>),
    /// No answer within the deadline. What the statement did is unknown.
    TimedOut(Duration),
    /// The connection's runtime could not be started (out of descriptors or threads).
    Runtime(std::io::Error),
    /// No pooled connection freed up (or could be opened) within `DB_POOL_TIMEOUT_MS`.
    Pool(r2d2::Error),
}

/// What a failure means to the layers above, whatever its mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A passing condition: the database is unreachable, shutting down, overloaded or
    /// slow, or no connection was free in time. The same request later may well work.
    Unavailable,
    /// A unique constraint refused the row: the constraint's name (see
    /// `users::EMAIL_INDEX`).
    Conflict(&'a str),
    /// Anything else: a bug, a broken schema, a value the database refused.
    Other,
}

impl DbError {
    /// The server's SQLSTATE, when the server sent one.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            DbError::Pg(e) | DbError::Lost(e) | DbError::Stale(Some(e)) => e.code(),
            _ => None,
        }
    }

    /// Whether this failure will pass, came from a named constraint, or is neither.
    pub fn kind(&self) -> Kind<'_> {
        match self {
            DbError::Pg(e) => pg_kind(e),
            // The connection died or never answered, or none could be had: a retry may
            // well work.
            DbError::Lost(_)
            | DbError::Stale(_)
            | DbError::TimedOut(_)
            | DbError::Runtime(_)
            | DbError::Pool(_) => Kind::Unavailable,
        }
    }
}

/// The kind of a statement's failure, from its SQLSTATE or, without one, its cause.
fn pg_kind(e: &tokio_postgres::Error) -> Kind<'_> {
    use std::error::Error as _;
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => {
            match e.as_db_error().and_then(|d| d.constraint()) {
                Some(name) => Kind::Conflict(name),
                None => Kind::Other,
            }
        }
        // The server is shutting down or refusing connections, or cancelled the
        // statement (a timeout, or a replica's conflict with replay): passing
        // conditions, worth a retry.
        Some(c)
            if *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || *c == SqlState::QUERY_CANCELED
                || *c == SqlState::T_R_SERIALIZATION_FAILURE =>
        {
            Kind::Unavailable
        }
        Some(_) => Kind::Other,
        // No SQLSTATE and an I/O cause: the connection itself failed (closed, reset,
        // timed out), which a retry on a fresh connection may cure.
        None if e.is_closed() || e.source().is_some_and(|s| s.is::<std::io::Error>()) => {
            Kind::Unavailable
        }
        None => Kind::Other,
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Pg(e) => e.fmt(f),
            DbError::Lost(_) => f.write_str("the connection to the database was lost"),
            DbError::Stale(_) => f.write_str("the pooled connection to the database was dead"),
            DbError::TimedOut(d) => write!(f, "the database did not answer within {d:?}"),
            DbError::Runtime(e) => write!(f, "could not start a connection's runtime: {e}"),
            DbError::Pool(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Our Display is the driver's; its source carries the server's message.
            DbError::Pg(e) => e.source(),
            DbError::Lost(e) | DbError::Stale(Some(e)) => Some(e),
            DbError::Stale(None) | DbError::TimedOut(_) => None,
            DbError::Runtime(e) => Some(e),
            // Our Display is r2d2's.
            DbError::Pool(e) => e.source(),
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> DbError {
        DbError::Pg(e)
    }
}

impl From<r2d2::Error> for DbError {
    fn from(e: r2d2::Error) -> DbError {
        DbError::Pool(e)
    }
}

/// A statement's parameters, each with its type, as `query_typed` takes them.
pub type Params<'a> = [(&'a (dyn ToSql + Sync), Type)];

/// One open connection.
pub struct Session {
    client: Client,
    driver: Driver,
    /// `None` when the cache is off.
    statements: Option<Statements>,
}

/// The statements one connection has prepared, keyed by their SQL. A handful of `const`s,
/// so a short list beats a hash map: the pointer comparison usually settles it.
#[derive(Default)]
struct Statements(Vec<(&'static str, Statement)>);

impl Statements {
    fn get(&self, sql: &'static str) -> Option<&Statement> {
        self.0
            .iter()
            .find(|(s, _)| s.len() == sql.len() && (s.as_ptr() == sql.as_ptr() || *s == sql))
            .map(|(_, st)| st)
    }
}

/// How many rows a statement must return.
#[derive(Clone, Copy)]
enum Rows {
    Any,
    ExactlyOne,
}

/// PostgreSQL refuses to run a cached plan whose result columns changed under it (a
/// column's type altered, for one), with "cached plan must not change result type". It
/// raises that before executing anything, and any ERROR in an implicit transaction
/// rolls back what the statement did, so preparing afresh and running it once more is
/// safe even for a write. The SQLSTATE is generic (feature not supported), but running
/// again costs one round trip at worst, and the message may be translated.
fn is_stale_plan(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED)
}

/// Runs `sql` on the connection's prepared statement, preparing it first if need be;
/// after a stale plan, forgets every prepared statement (they may all be stale) and
/// tries once more.
async fn run_prepared(
    client: &Client,
    statements: &mut Statements,
    sql: &'static str,
    params: &Params<'_>,
    rows: Rows,
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
    let mut replanned = false;
    loop {
        let statement = match statements.get(sql) {
            Some(s) => s.clone(),
            None => {
                let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
                let s = client.prepare_typed(sql, &types).await?;
                statements.0.push((sql, s.clone()));
                s
            }
        };
        let result = match rows {
            Rows::Any => client.query(&statement, &values).await,
            Rows::ExactlyOne => client.query_one(&statement, &values).await.map(|r| vec![r]),
        };
        match result {
            Err(e) if !replanned && is_stale_plan(&e) => {
                log::info!("re-preparing statements after a schema change: {e}");
                // Dropping them queues a Close for each, sent with the next message.
                statements.0.clear();
                replanned = true;
            }
            other => return other,
        }
    }
}

/// The connection's socket side, the runtime that runs it, and the deadline it enforces.
/// Kept apart from the client so that a statement can borrow the client while the driver
/// awaits it.
struct Driver {
    connection: Connection<Socket, TlsStream>,
    /// Always `Some` until dropped (see `Drop`).
    runtime: Option<Runtime>,
    deadline: Duration,
    /// Timed out, or the connection failed or ended: never to be used again.
    broken: bool,
    wakeup: Arc<Wakeup>,
    /// `wakeup` as a `Waker`, made once.
    waker: Waker,
}

impl Driver {
    /// Runs `statement` to completion, driving the connection in the same poll (as
    /// `postgres` does: no task to schedule, no channel hop to another task), or gives
    /// up at `deadline`.
    fn block<T>(
        &mut self,
        deadline: Duration,
        statement: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, DbError> {
        let (false, Some(runtime)) = (self.broken, &self.runtime) else {
            // Nothing would drive the connection: fail now, not at the deadline.
            return Err(DbError::Stale(None));
        };
        let connection = &mut self.connection;
        let broken = &mut self.broken;
        let wakeup = &self.wakeup;
        let waker = &self.waker;
        let mut statement = pin!(statement);
        // The statement sends nothing until it is first polled.
        let mut sent = false;
        let both = poll_fn(|outer| {
            wakeup.pass_on_to(outer.waker());
            let mut cx = Context::from_waker(waker);
            for _ in 0..PASSES {
                wakeup.start_pass();
                let result = pass(connection, broken, &mut sent, statement.as_mut(), &mut cx);
                if result.is_ready() || !wakeup.end_pass() {
                    return result;
                }
            }
            // Still asking for more (the runtime's budget for one poll may be spent): let
            // the runtime poll again.
            outer.waker().wake_by_ref();
            Poll::Pending
        });
        match runtime.block_on(async { tokio::time::timeout(deadline, both).await }) {
            Ok(result) => result,
            Err(_) => {
                // The reply may still come, and would then answer the next statement:
                // this connection is done.
                self.broken = true;
                Err(DbError::TimedOut(deadline))
            }
        }
    }
}

/// Passes over the connection and the statement before handing control back to the
/// runtime, when each pass woke the next (see `Wakeup`).
const PASSES: usize = 4;

/// One pass: the connection takes in what the server sent (and sends what is queued),
/// then the statement moves on.
fn pass<T>(
    connection: &mut Connection<Socket, TlsStream>,
    broken: &mut bool,
    sent: &mut bool,
    statement: Pin<&mut impl Future<Output = Result<T, tokio_postgres::Error>>>,
    cx: &mut Context<'_>,
) -> Poll<Result<T, DbError>> {
    while !*broken {
        match connection.poll_message(cx) {
            // NOTICEs are never news for this service (through PgBouncer, which drops
            // our client_min_messages, the migrations' "already exists, skipping" at
            // every start): kept for debugging, out of the normal log.
            Poll::Ready(Some(Ok(AsyncMessage::Notice(n)))) => {
                log::debug!("database notice: {}: {}", n.severity(), n.message());
            }
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(e))) => {
                *broken = true;
                return Poll::Ready(Err(if *sent {
                    DbError::Lost(e)
                } else {
                    DbError::Stale(Some(e))
                }));
            }
            // The connection ended; the statement learns it from its own side.
            Poll::Ready(None) => *broken = true,
            Poll::Pending => break,
        }
    }
    *sent = true;
    statement.poll(cx).map_err(|e| {
        // A FATAL ends the session whatever its SQLSTATE (an idle-session
        // timeout, a pooler's disconnect), even when it came as this
        // statement's answer.
        if is_fatal(&e) {
            *broken = true;
            DbError::Lost(e)
        } else {
            DbError::Pg(e)
        }
    })
}

/// The waker the connection and the statement see. The statement hands its request to
/// the connection through a channel, which wakes the connection's task: with the
/// runtime's own waker that costs an eventfd write and an extra `epoll_wait` per
/// statement before the request is even sent. A wake-up that comes while we poll asks
/// for one more pass instead; one that comes from the runtime (the socket became
/// readable) is passed on to the runtime's waker, as before.
#[derive(Default)]
struct Wakeup {
    polling: AtomicBool,
    again: AtomicBool,
    outer: Mutex<Option<Waker>>,
}

impl Wakeup {
    fn pass_on_to(&self, waker: &Waker) {
        let mut outer = self.outer.lock().unwrap_or_else(PoisonError::into_inner);
        if !outer.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *outer = Some(waker.clone());
        }
    }

    fn start_pass(&self) {
        self.again.store(false, Ordering::Relaxed);
        self.polling.store(true, Ordering::Relaxed);
    }

    /// Whether the pass asked for another.
    fn end_pass(&self) -> bool {
        self.polling.store(false, Ordering::Relaxed);
        self.again.load(Ordering::Relaxed)
    }
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // The runtime is current-thread and only runs while we poll or park in
        // `block`: a wake-up during a pass comes from that pass.
        if self.polling.load(Ordering::Relaxed) {
            self.again.store(true, Ordering::Relaxed);
        } else if let Some(w) = self
            .outer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            w.wake_by_ref();
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Without waiting for blocking tasks: a host name's resolver may be stuck.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn is_fatal(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|d| matches!(d.parsed_severity(), Some(Severity::Fatal | Severity::Panic)))
}

impl Session {
    /// Opens a connection: the TCP connect, authentication and start-up, all within
    /// `deadline`, which then bounds each statement too.
    pub fn connect(
        endpoint: &Endpoint,
        deadline: Duration,
        cache: StatementCache,
    ) -> Result<Session, DbError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(DbError::Runtime)?;
        let connect = endpoint.pg.connect(endpoint.tls.make());
        let connected = runtime.block_on(async { tokio::time::timeout(deadline, connect).await });
        let (client, connection) = match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(DbError::Pg(e)),
            Err(_) => {
                // Without waiting for blocking tasks: the resolver may be what hangs.
                runtime.shutdown_background();
                return Err(DbError::TimedOut(deadline));
            }
        };
        let wakeup = Arc::new(Wakeup::default());
        let driver = Driver {
            connection,
            runtime: Some(runtime),
            deadline,
            broken: false,
            waker: Waker::from(Arc::clone(&wakeup)),
            wakeup,
        };
        let statements = (cache == StatementCache::On).then(Statements::default);
        Ok(Session {
            client,
            driver,
            statements,
        })
    }

    /// Runs `sql` with `params`, within one deadline whether or not it must be prepared
    /// first. `sql` is a `const`: it keys the connection's prepared statements.
    pub fn query_typed(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, DbError> {
        self.run(sql, params, Rows::Any)
    }

    /// As `query_typed`, for a statement that returns exactly one row (else an error).
    pub fn query_typed_one(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Row, DbError> {
        let rows = self.run(sql, params, Rows::ExactlyOne)?;
        // Our own invariant, not the database's: `ExactlyOne` is an error or one row.
        Ok(rows.into_iter().next().expect("ExactlyOne returns one row"))
    }

    fn run(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
        rows: Rows,
    ) -> Result<Vec<Row>, DbError> {
        let deadline = self.driver.deadline;
        let client = &self.client;
        match &mut self.statements {
            Some(statements) => self.driver.block(
                deadline,
                run_prepared(client, statements, sql, params, rows),
            ),
            None => match rows {
                Rows::Any => self.driver.block(deadline, client.query_typed(sql, params)),
                Rows::ExactlyOne => self
                    .driver
                    .block(deadline, client.query_typed_one(sql, params))
                    .map(|r| vec![r]),
            },
        }
    }

    /// How many statements this session holds prepared (0 with the cache off).
    pub fn prepared_statements(&self) -> usize {
        self.statements.as_ref().map_or(0, |s| s.0.len())
    }

    pub fn simple_query(&mut self, sql: &str) -> Result<Vec<SimpleQueryMessage>, DbError> {
        let deadline = self.driver.deadline;
        self.driver.block(deadline, self.client.simple_query(sql))
    }

    pub fn batch_execute(&mut self, sql: &str) -> Result<(), DbError> {
        let deadline = self.driver.deadline;
        self.driver.block(deadline, self.client.batch_execute(sql))
    }

    /// An empty round trip, given its own (usually shorter) deadline: a check before
    /// use must not cost a request more than waiting for a connection would. A session
    /// that fails it is broken, whatever the reason.
    pub fn ping(&mut self, deadline: Duration) -> Result<(), DbError> {
        let result = self
            .driver
            .block(deadline, self.client.simple_query(""))
            .map(drop);
        self.driver.broken |= result.is_err();
        result
    }

    /// Sets the deadline of each later statement, returning the one it replaces.
    pub fn set_deadline(&mut self, deadline: Duration) -> Duration {
        std::mem::replace(&mut self.driver.deadline, deadline)
    }

    /// Timed out, failed or closed by the server: never to be used again.
    pub fn is_broken(&self) -> bool {
        self.driver.broken || self.client.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Instant;

    use super::*;

    /// Counts the wake-ups it is given.
    #[derive(Default)]
    struct Counter(std::sync::atomic::AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_wake_up_during_a_pass_asks_for_another_pass_and_does_not_reach_the_runtime() {
        let runtime = Arc::new(Counter::default());
        let wakeup = Arc::new(Wakeup::default());
        wakeup.pass_on_to(&Waker::from(Arc::clone(&runtime)));
        let waker = Waker::from(Arc::clone(&wakeup));

        wakeup.start_pass();
        waker.wake_by_ref();
        let again = wakeup.end_pass();

        assert!(again);
        assert_eq!(runtime.0.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_wake_up_between_passes_reaches_the_runtime() {
        let runtime = Arc::new(Counter::default());
        let wakeup = Arc::new(Wakeup::default());
        wakeup.pass_on_to(&Waker::from(Arc::clone(&runtime)));
        let waker = Waker::from(Arc::clone(&wakeup));

        wakeup.start_pass();
        let again = wakeup.end_pass();
        waker.wake_by_ref();

        assert!(!again);
        assert_eq!(runtime.0.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn connect_times_out_when_the_server_accepts_but_never_answers() {
        // A "database" whose kernel completes the handshake and then nothing answers,
        // like a stopped postmaster or a stuck host.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let holder = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
        let mut pg = tokio_postgres::Config::new();
        pg.host("127.0.0.1").port(port).user("u").dbname("d");
        let tls = crate::db::tls::Connector::new(&Default::default()).unwrap();

        let started = Instant::now();
        let result = Session::connect(
            &Endpoint { pg, tls },
            Duration::from_millis(200),
            StatementCache::On,
        );
        let took = started.elapsed();

        assert!(
            matches!(result, Err(DbError::TimedOut(d)) if d == Duration::from_millis(200)),
            "{:?}",
            result.err()
        );
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        drop(holder.join());
    }
}
