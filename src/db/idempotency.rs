//! The idempotency_keys table (sql/0002): one function per statement, and the
//! transaction a keyed write runs in.
//!
//! A keyed write is: BEGIN; take the key's advisory lock without waiting (another holder
//! is a retry still running: 409); look the key up (a stored answer is replayed, or
//! refused when it answered another request); run the write; store its answer; COMMIT.
//! The answer is stored in the write's own transaction, so it exists exactly when the
//! write committed, whatever happens to the connection or to the response afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use log::{info, warn};
use tokio_postgres::types::Type;

use super::{DbError, Endpoint, Session, StatementCache};
use crate::error_chain::chain;

/// Advisory locks in two-int form live apart from the single-bigint one the migrations
/// take; this first half names ours.
const LOCK: &str = "SELECT pg_try_advisory_xact_lock(1769, hashtext($1 || ' ' || $2))";
const FIND: &str = "SELECT fingerprint, status, location, etag, body FROM idempotency_keys \
     WHERE owner = $1 AND key = $2 AND expires_at > now()";
/// An expired row that the purge has not reached yet is taken over.
const STORE: &str = "INSERT INTO idempotency_keys \
     (owner, key, fingerprint, status, location, etag, body, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8 * interval '1 millisecond') \
     ON CONFLICT (owner, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, \
     status = EXCLUDED.status, location = EXCLUDED.location, etag = EXCLUDED.etag, \
     body = EXCLUDED.body, created_at = now(), expires_at = EXCLUDED.expires_at \
     WHERE idempotency_keys.expires_at <= now()";
/// A bounded batch, skipping rows a request holds, so the purge never waits on a request
/// nor makes one wait for long.
const PURGE: &str = "WITH gone AS (DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY( \
     SELECT ctid FROM idempotency_keys WHERE expires_at <= now() \
     LIMIT $1 FOR UPDATE SKIP LOCKED)) RETURNING 1) SELECT count(*) FROM gone";

/// The rows one purge statement deletes at most.
pub const PURGE_BATCH: i64 = 1000;

/// A response as stored for replay: what a client needs to act on it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub body: Vec<u8>,
}

/// A key's stored answer and the fingerprint of the request it answered.
#[derive(Debug)]
pub struct Stored {
    pub fingerprint: Vec<u8>,
    pub response: StoredResponse,
}

/// An open transaction on a session, rolled back when dropped uncommitted (an early
/// return, an error, a panic), so a pooled connection never goes back mid-transaction.
pub struct Transaction<'a> {
    session: &'a mut Session,
    open: bool,
}

impl<'a> Transaction<'a> {
    pub fn begin(session: &'a mut Session) -> Result<Transaction<'a>, DbError> {
        session.batch_execute("BEGIN")?;
        Ok(Transaction {
            session,
            open: true,
        })
    }

    pub fn session(&mut self) -> &mut Session {
        self.session
    }

    pub fn commit(mut self) -> Result<(), DbError> {
        self.open = false;
        self.session.batch_execute("COMMIT")
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.open {
            // A session that cannot roll back is broken, and the pool drops it.
            let _ = self.session.batch_execute("ROLLBACK");
        }
    }
}

/// Takes the key's lock for the rest of the transaction, or `false` when another
/// transaction holds it.
pub fn try_lock(tx: &mut Transaction<'_>, owner: &str, key: &str) -> Result<bool, DbError> {
    let row = tx
        .session()
        .query_typed_one(LOCK, &[(&owner, Type::TEXT), (&key, Type::TEXT)])?;
    Ok(row.try_get(0)?)
}

/// The key's stored answer, unless it has expired.
pub fn find(tx: &mut Transaction<'_>, owner: &str, key: &str) -> Result<Option<Stored>, DbError> {
    let rows = tx
        .session()
        .query_typed(FIND, &[(&owner, Type::TEXT), (&key, Type::TEXT)])?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let status: i16 = row.try_get(1)?;
    Ok(Some(Stored {
        fingerprint: row.try_get(0)?,
        response: StoredResponse {
            status: u16::try_from(status).unwrap_or(500),
            location: row.try_get(2)?,
            etag: row.try_get(3)?,
            body: row.try_get(4)?,
        },
    }))
}

/// Stores the answer to the key's request, to expire after `ttl`.
pub fn store(
    tx: &mut Transaction<'_>,
    owner: &str,
    key: &str,
    fingerprint: &[u8],
    response: &StoredResponse,
    ttl: Duration,
) -> Result<(), DbError> {
    let status = i16::try_from(response.status).unwrap_or(i16::MAX);
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    tx.session().query_typed(
        STORE,
        &[
            (&owner, Type::TEXT),
            (&key, Type::TEXT),
            (&fingerprint, Type::BYTEA),
            (&status, Type::INT2),
            (&response.location, Type::TEXT),
            (&response.etag, Type::TEXT),
            (&response.body.as_slice(), Type::BYTEA),
            (&ttl_ms, Type::INT8),
        ],
    )?;
    Ok(())
}

/// Deletes up to [`PURGE_BATCH`] expired keys; returns how many.
pub fn purge_batch(c: &mut Session) -> Result<u64, DbError> {
    let row = c.query_typed_one(PURGE, &[(&PURGE_BATCH, Type::INT8)])?;
    let n: i64 = row.try_get(0)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Whether any key is stored at all: while none is, the purge has nothing to do.
const ANY: &str = "SELECT EXISTS (SELECT 1 FROM idempotency_keys)";

/// The background purge of expired keys; it stops when this is dropped.
///
/// It works only after this process has stored a key, and until the table is empty: a
/// server that never sees an `Idempotency-Key` never sends the purge's statements (its
/// SQL is exactly the plain requests'), and keys a previous process left behind are
/// ignored once expired and purged after this process stores one.
pub struct Purger {
    _stop: mpsc::Sender<()>,
    pending: Arc<AtomicBool>,
}

impl Purger {
    /// Every `every` while keys may be waiting, opens its own connection (none of the
    /// pool's, so a purge never holds a connection a request waits for), deletes expired
    /// keys a batch at a time, and closes it. A failure is logged and the next round
    /// tries again.
    pub fn spawn(
        pg: Endpoint,
        query_timeout: Duration,
        every: Duration,
    ) -> std::io::Result<Purger> {
        let (stop, stopped) = mpsc::channel::<()>();
        let pending = Arc::new(AtomicBool::new(false));
        let due = Arc::clone(&pending);
        thread::Builder::new()
            .name("idempotency-purge".into())
            .spawn(move || {
                // Only a timeout means "purge now"; the sender dropped means stop.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    // Cleared before the round, so a key stored during it sets it again.
                    if !due.swap(false, Ordering::Relaxed) {
                        continue;
                    }
                    let left = match purge(&pg, query_timeout) {
                        Ok((n, left)) => {
                            if n > 0 {
                                info!("purged {n} expired idempotency keys");
                            }
                            left
                        }
                        Err(e) => {
                            warn!("purging expired idempotency keys failed: {}", chain(&e));
                            true
                        }
                    };
                    if left {
                        due.store(true, Ordering::Relaxed);
                    }
                }
            })?;
        Ok(Purger {
            _stop: stop,
            pending,
        })
    }

    /// A key was stored: it will need purging once it expires.
    pub fn note_stored(&self) {
        self.pending.store(true, Ordering::Relaxed);
    }
}

/// Deletes every expired key, one bounded batch per statement (each its own short
/// transaction); returns how many, and whether any key (expired or not) is left.
pub fn purge(pg: &Endpoint, query_timeout: Duration) -> Result<(u64, bool), DbError> {
    // A few statements on a connection of its own: nothing to gain from preparing them,
    // and unprepared statements work behind any pooler.
    let mut session = Session::connect(pg, query_timeout, StatementCache::Off)?;
    let mut total = 0;
    loop {
        let n = purge_batch(&mut session)?;
        total += n;
        if n < PURGE_BATCH as u64 {
            let left: bool = session.query_typed_one(ANY, &[])?.try_get(0)?;
            return Ok((total, left));
        }
    }
}
