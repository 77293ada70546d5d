//! Schema migrations: the numbered files of `sql/`, embedded in the binary and applied in
//! one transaction under an advisory lock, so replicas starting together never race.

use std::time::Duration;

use log::info;
use tokio_postgres::types::Type;

use super::{DbError, Session};

/// `(version, name, sql)`, in order. The files are idempotent, so a database first set up
/// by a container's `/docker-entrypoint-initdb.d` migrates cleanly too.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "0001_create_users",
        include_str!("../../sql/0001_create_users.sql"),
    ),
    (
        2,
        "0002_create_idempotency_keys",
        include_str!("../../sql/0002_create_idempotency_keys.sql"),
    ),
];

/// Any fixed number serves; this one spells "userapi" in ASCII.
const LOCK_KEY: i64 = 0x0075_7365_7261_7069;

/// Migrations may rightly take long (an index on a big table, another instance holding
/// the lock while it migrates): they are not held to `DB_QUERY_TIMEOUT_MS`, only to this
/// (and to the server's `statement_timeout`).
const DEADLINE: Duration = Duration::from_secs(600);

/// Applies what has not run yet, in one transaction, and returns the names of what it
/// applied.
pub fn run(session: &mut Session) -> Result<Vec<&'static str>, DbError> {
    let usual = session.set_deadline(DEADLINE);
    let result = in_transaction(session);
    session.set_deadline(usual);
    result
}

fn in_transaction(session: &mut Session) -> Result<Vec<&'static str>, DbError> {
    session.batch_execute("BEGIN")?;
    match apply(session) {
        Ok(applied) => {
            session.batch_execute("COMMIT")?;
            Ok(applied)
        }
        Err(e) => {
            // Best effort: the caller gives up on this session (and start-up) anyway.
            let _ = session.batch_execute("ROLLBACK");
            Err(e)
        }
    }
}

fn apply(session: &mut Session) -> Result<Vec<&'static str>, DbError> {
    session.query_typed(
        "SELECT pg_advisory_xact_lock($1)",
        &[(&LOCK_KEY, Type::INT8)],
    )?;
    session.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )?;
    let done = session
        .query_typed("SELECT version FROM schema_migrations", &[])?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<Vec<i32>, _>>()?;
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| !done.contains(&m.0)) {
        session.batch_execute(sql)?;
        session.query_typed(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[(&version, Type::INT4), (&name, Type::TEXT)],
        )?;
        info!("applied migration {name}");
        applied.push(name);
    }
    Ok(applied)
}
