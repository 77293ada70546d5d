//! One connection to PostgreSQL, used synchronously, with a deadline on every exchange.
//!
//! The `postgres` crate's blocking client has no client-side timeout: a database that
//! hangs while its kernel still acknowledges every packet (a stopped process, a stuck
//! host) holds the calling thread for as long as it hangs, and `statement_timeout` cannot
//! help because nothing on that side runs. So we drive `tokio-postgres` (what `postgres`
//! wraps) ourselves, the same way: a current-thread runtime per connection, entered only
//! while a statement runs, polling the connection and the statement together. Every statement is bounded by `DB_QUERY_TIMEOUT_MS`; past it
//! the session is broken and the pool drops it, which closes the socket.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio_postgres::error::Severity;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, Connection, Row, SimpleQueryMessage, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::Endpoint;

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
}

impl DbError {
    /// The server's SQLSTATE, when the server sent one.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            DbError::Pg(e) | DbError::Lost(e) | DbError::Stale(Some(e)) => e.code(),
            _ => None,
        }
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
        }
    }
}

impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> DbError {
        DbError::Pg(e)
    }
}

/// A statement's parameters, each with its type, as `query_typed` takes them.
pub type Params<'a> = [(&'a (dyn ToSql + Sync), Type)];

/// One open connection.
pub struct Session {
    client: Client,
    driver: Driver,
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
        let mut statement = pin!(statement);
        // The statement sends nothing until it is first polled.
        let mut sent = false;
        let both = poll_fn(|cx| {
            while !*broken {
                match connection.poll_message(cx) {
                    Poll::Ready(Some(Ok(AsyncMessage::Notice(n)))) => {
                        log::info!("database notice: {}: {}", n.severity(), n.message());
                    }
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(Some(Err(e))) => {
                        *broken = true;
                        return Poll::Ready(Err(if sent {
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
            sent = true;
            statement.as_mut().poll(cx).map_err(|e| {
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
    pub fn connect(endpoint: &Endpoint, deadline: Duration) -> Result<Session, DbError> {
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
        let driver = Driver {
            connection,
            runtime: Some(runtime),
            deadline,
            broken: false,
        };
        Ok(Session { client, driver })
    }

    pub fn query_typed(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, DbError> {
        let deadline = self.driver.deadline;
        self.driver
            .block(deadline, self.client.query_typed(sql, params))
    }

    pub fn query_typed_one(&mut self, sql: &str, params: &Params<'_>) -> Result<Row, DbError> {
        let deadline = self.driver.deadline;
        self.driver
            .block(deadline, self.client.query_typed_one(sql, params))
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
        let result = Session::connect(&Endpoint { pg, tls }, Duration::from_millis(200));
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
