//! Schema migrations: the numbered files of `sql/`, embedded in the binary and applied in
//! one transaction under an advisory lock, so replicas starting together never race.

use log::info;
use postgres::Client;

/// `(version, name, sql)`, in order. The files are idempotent, so a database first set up
/// by a container's `/docker-entrypoint-initdb.d` migrates cleanly too.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "0001_create_users",
    include_str!("../../sql/0001_create_users.sql"),
)];

/// Any fixed number serves; this one spells "userapi" in ASCII.
const LOCK_KEY: i64 = 0x0075_7365_7261_7069;

/// Applies what has not run yet and returns the names of what it applied.
pub fn run(client: &mut Client) -> Result<Vec<&'static str>, postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )?;
    let done: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| !done.contains(&m.0)) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )?;
        info!("applied migration {name}");
        applied.push(name);
    }
    tx.commit()?;
    Ok(applied)
}
