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
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{
    AsyncMessage, Client, Config, Connection, NoTls, Row, SimpleQueryMessage, Socket,
};

/// Why a statement (or a connection attempt) failed.
#[derive(Debug)]
pub enum DbError {
    /// The server refused it or the driver failed: see `tokio_postgres::Error`.
    Pg(tokio_postgres::Error),
    /// No answer within the deadline. What the statement did is unknown.
    TimedOut(Duration),
    /// The connection's runtime could not be started (out of descriptors or threads).
    Runtime(std::io::Error),
}

impl DbError {
    /// The server's SQLSTATE, when the server sent one.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            DbError::Pg(e) => e.code(),
            _ => None,
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Pg(e) => e.fmt(f),
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
            DbError::TimedOut(_) => None,
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
    connection: Connection<Socket, NoTlsStream>,
    runtime: Runtime,
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
        let connection = &mut self.connection;
        let broken = &mut self.broken;
        let mut statement = pin!(statement);
        let both = poll_fn(|cx| {
            while !*broken {
                match connection.poll_message(cx) {
                    Poll::Ready(Some(Ok(AsyncMessage::Notice(n)))) => {
                        log::info!("database notice: {}: {}", n.severity(), n.message());
                    }
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(Some(Err(e))) => {
                        *broken = true;
                        return Poll::Ready(Err(e));
                    }
                    // The connection ended; the statement learns it from its own side.
                    Poll::Ready(None) => *broken = true,
                    Poll::Pending => break,
                }
            }
            statement.as_mut().poll(cx)
        });
        match self
            .runtime
            .block_on(async { tokio::time::timeout(deadline, both).await })
        {
            Ok(result) => result.map_err(DbError::Pg),
            Err(_) => {
                // The reply may still come, and would then answer the next statement:
                // this connection is done.
                self.broken = true;
                Err(DbError::TimedOut(deadline))
            }
        }
    }
}

impl Session {
    /// Opens a connection: the TCP connect, authentication and start-up, all within
    /// `deadline`, which then bounds each statement too.
    pub fn connect(pg: &Config, deadline: Duration) -> Result<Session, DbError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(DbError::Runtime)?;
        let (client, connection) = runtime
            .block_on(async { tokio::time::timeout(deadline, pg.connect(NoTls)).await })
            .map_err(|_| DbError::TimedOut(deadline))??;
        let driver = Driver {
            connection,
            runtime,
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
        let mut pg = Config::new();
        pg.host("127.0.0.1").port(port).user("u").dbname("d");

        let started = Instant::now();
        let result = Session::connect(&pg, Duration::from_millis(200));
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
