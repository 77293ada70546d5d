//! One connection to PostgreSQL, used synchronously, with a deadline on every exchange.
//!
//! The `postgres` crate's blocking client has no client-side timeout: a database that
//! hangs while its kernel still acknowledges every packet (a stopped process, a stuck
//! host) holds the calling thread for as long as it hangs, and `statement_timeout` cannot
//! help because nothing on that side runs. So we drive `tokio-postgres` (what `postgres`
//! wraps) ourselves, on the calling thread and with no runtime: the connection and the
//! statement are polled together, and between passes the thread waits for the socket
//! with `poll(2)` (`socket::Socket::wait`). Every statement is bounded by
//! `DB_QUERY_TIMEOUT_MS`; past it the session is broken and the pool drops it, which
//! closes the socket.
//!
//! Each session also keeps the statements it prepared (unless the cache is off, for a
//! pooler that cannot follow named statements): PostgreSQL then parses and plans a
//! statement once per connection instead of once per request.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::error::Severity;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, Connection, Row, SimpleQueryMessage, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::Endpoint;
use super::socket::{self, Socket};

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
    /// No connection could be opened (refused, unreachable, a name that does not
    /// resolve, a server that is not the kind `target_session_attrs` asks for), or the
    /// socket could not be waited on.
    Connect(io::Error),
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
            | DbError::Connect(_)
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
            DbError::Connect(e) => write!(f, "could not connect to the database: {e}"),
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
            DbError::Connect(e) => Some(e),
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

/// The connection's socket side and the deadline it enforces. Kept apart from the
/// client so that a statement can borrow the client while the driver polls it.
struct Driver {
    connection: Connection<Socket, TlsStream>,
    socket: Socket,
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
        if self.broken {
            // Nothing would answer: fail now, not at the deadline.
            return Err(DbError::Stale(None));
        }
        let until = Instant::now() + deadline;
        let Driver {
            connection,
            socket,
            broken,
            wakeup,
            waker,
            ..
        } = self;
        let mut statement = pin!(statement);
        // The statement sends nothing until it is first polled.
        let mut sent = false;
        let outcome = drive(socket, wakeup, waker, until, |cx| {
            pass(connection, broken, &mut sent, statement.as_mut(), cx)
        });
        match outcome {
            Ok(Some(result)) => result,
            Ok(None) => {
                // The reply may still come, and would then answer the next statement:
                // this connection is done.
                self.broken = true;
                Err(DbError::TimedOut(deadline))
            }
            Err(e) => {
                self.broken = true;
                Err(DbError::Connect(e))
            }
        }
    }
}

/// Polls `step` until it is ready: again at once when a pass woke something (the
/// statement handing its request to the connection), else once the socket is ready.
/// `Ok(None)` when `until` comes first.
fn drive<T>(
    socket: &Socket,
    wakeup: &Wakeup,
    waker: &Waker,
    until: Instant,
    mut step: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> io::Result<Option<T>> {
    let mut cx = Context::from_waker(waker);
    loop {
        let step = step(&mut cx);
        socket.end_pass();
        if let Poll::Ready(v) = step {
            return Ok(Some(v));
        }
        if wakeup.0.swap(false, Ordering::Relaxed) {
            continue;
        }
        if !socket.wait(until)? {
            return Ok(None);
        }
    }
}

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

/// The waker the connection and the statement see. Nothing runs them but `drive`, so a
/// wake-up only means "pass again before waiting": the statement handed its request to
/// the connection through a channel, which wakes the connection's side.
#[derive(Default)]
struct Wakeup(AtomicBool);

impl Wakeup {
    /// A wake-up flag and the waker that sets it.
    fn new() -> (Arc<Wakeup>, Waker) {
        let wakeup = Arc::new(Wakeup::default());
        let waker = Waker::from(Arc::clone(&wakeup));
        (wakeup, waker)
    }
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn is_fatal(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|d| matches!(d.parsed_severity(), Some(Severity::Fatal | Severity::Panic)))
}

impl Session {
    /// Opens a connection: the TCP connect, authentication and start-up, all within
    /// `deadline`, which then bounds each statement too. With several hosts, each is
    /// tried in turn (as tokio-postgres' own `connect` would), until one is of the kind
    /// `target_session_attrs` asks for; the last failure is returned.
    pub fn connect(
        endpoint: &Endpoint,
        deadline: Duration,
        cache: StatementCache,
    ) -> Result<Session, DbError> {
        let until = Instant::now() + deadline;
        let pg = &endpoint.pg;
        let mut last = DbError::Connect(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no host to connect to",
        ));
        for host in socket::hosts(pg) {
            let addrs = match host.addresses(pg, until) {
                Ok(addrs) => addrs,
                Err(e) => {
                    last = DbError::Connect(e);
                    continue;
                }
            };
            for addr in addrs {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(DbError::TimedOut(deadline));
                }
                let per_host = pg.get_connect_timeout().map_or(left, |t| left.min(*t));
                let attempt = socket::open(&addr, per_host, pg)
                    .map_err(DbError::Connect)
                    .and_then(|s| {
                        Session::start(
                            endpoint,
                            s,
                            host.hostname.as_deref(),
                            until,
                            deadline,
                            cache,
                        )
                    })
                    .and_then(|session| session.check_kind(pg));
                match attempt {
                    Ok(session) => return Ok(session),
                    Err(DbError::TimedOut(d)) => return Err(DbError::TimedOut(d)),
                    Err(e) => last = e,
                }
            }
        }
        Err(last)
    }

    /// TLS (when negotiated), authentication and start-up on a connected socket.
    fn start(
        endpoint: &Endpoint,
        socket: Socket,
        hostname: Option<&str>,
        until: Instant,
        deadline: Duration,
        cache: StatementCache,
    ) -> Result<Session, DbError> {
        let mut make = endpoint.tls.make();
        let tls = <MakeRustlsConnect as MakeTlsConnect<Socket>>::make_tls_connect(
            &mut make,
            hostname.unwrap_or(""),
        )
        .map_err(|e| DbError::Connect(io::Error::other(e)))?;
        let (wakeup, waker) = Wakeup::new();
        let mut connect = pin!(endpoint.pg.connect_raw(socket.clone(), tls));
        let (client, connection) = match drive(&socket, &wakeup, &waker, until, |cx| {
            connect.as_mut().poll(cx)
        }) {
            Ok(Some(Ok(pair))) => pair,
            Ok(Some(Err(e))) => return Err(DbError::Pg(e)),
            Ok(None) => return Err(DbError::TimedOut(deadline)),
            Err(e) => return Err(DbError::Connect(e)),
        };
        socket.set_read_deadline(deadline);
        Ok(Session {
            client,
            driver: Driver {
                connection,
                socket,
                deadline,
                broken: false,
                wakeup,
                waker,
            },
            statements: (cache == StatementCache::On).then(Statements::default),
        })
    }

    /// Whether the server is what `target_session_attrs` asks for (`read-write`: a
    /// primary, `read-only`: a standby), asked as tokio-postgres asks it.
    fn check_kind(mut self, pg: &tokio_postgres::Config) -> Result<Session, DbError> {
        let wanted = pg.get_target_session_attrs();
        if wanted == TargetSessionAttrs::Any {
            return Ok(self);
        }
        let read_only = self
            .simple_query("SHOW transaction_read_only")?
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).map(|v| v == "on"),
                _ => None,
            });
        match (wanted, read_only) {
            (TargetSessionAttrs::ReadWrite, Some(true)) => Err(DbError::Connect(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "database does not allow writes",
            ))),
            (TargetSessionAttrs::ReadOnly, Some(false)) => Err(DbError::Connect(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "database is not read only",
            ))),
            _ => Ok(self),
        }
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
        self.driver.socket.set_read_deadline(deadline);
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

    #[test]
    fn a_wake_up_during_a_pass_means_another_pass_without_waiting() {
        let (socket, _peer) = socket::tests::pair();
        let (wakeup, waker) = Wakeup::new();
        let mut passes = 0;
        let started = Instant::now();

        let done = drive(
            &socket,
            &wakeup,
            &waker,
            started + Duration::from_secs(10),
            |cx| {
                passes += 1;
                if passes == 1 {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                } else {
                    Poll::Ready("done")
                }
            },
        );

        assert_eq!(done.unwrap(), Some("done"));
        assert_eq!(passes, 2);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn without_a_wake_up_the_pass_waits_for_the_socket_until_the_deadline() {
        let (socket, mut peer) = socket::tests::pair();
        let (wakeup, waker) = Wakeup::new();
        let (mut passes, limit) = (0, Duration::from_millis(200));

        let started = Instant::now();
        let nothing = drive(&socket, &wakeup, &waker, started + limit, |_| {
            passes += 1;
            Poll::<()>::Pending
        });
        assert_eq!(nothing.unwrap(), None, "nothing came");
        assert!(started.elapsed() >= limit);
        assert_eq!(passes, 1, "one pass, then a wait");

        // Bytes from the peer end the wait at once.
        std::io::Write::write_all(&mut peer, b"x").unwrap();
        passes = 0;
        let started = Instant::now();
        let woken = drive(
            &socket,
            &wakeup,
            &waker,
            started + Duration::from_secs(10),
            |_| {
                passes += 1;
                if passes == 2 {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            },
        );
        assert_eq!(woken.unwrap(), Some(()));
        assert!(started.elapsed() < Duration::from_secs(5));
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
