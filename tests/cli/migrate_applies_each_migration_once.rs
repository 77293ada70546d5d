//! `user-api migrate` applies every file of `sql/` exactly once, however often and however
//! many times at once it runs, and agrees with the files applied by `psql`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// The number of migration files under `sql/`.
fn migration_files() -> Vec<PathBuf> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no migration in {dir}");
    files
}

/// The migrations table: `(name, version column)`, found by name since the contract
/// does not fix it.
fn migrations_table(db: &mut postgres::Client) -> (String, String) {
    let tables: Vec<String> = db
        .query(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
             AND table_name ILIKE '%migration%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables.len(), 1, "one migrations table: {tables:?}");
    let (schema, name) = tables[0].split_once('.').unwrap();
    let columns: Vec<String> = db
        .query(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            &[&schema, &name],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let version = ["version", "id", "name", "filename"]
        .iter()
        .find(|c| columns.iter().any(|col| col == *c))
        .map_or_else(|| columns[0].clone(), |c| (*c).to_owned());
    (format!("\"{schema}\".\"{name}\""), version)
}

/// Every migration is recorded exactly once; returns the table's rows as text.
fn assert_each_migration_once(db: &mut postgres::Client) -> Vec<String> {
    let (table, version) = migrations_table(db);
    let versions: Vec<String> = db
        .query(&format!("SELECT \"{version}\"::text FROM {table}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let unique: HashSet<&String> = versions.iter().collect();
    assert_eq!(
        unique.len(),
        versions.len(),
        "a version recorded twice: {versions:?}"
    );
    assert_eq!(
        versions.len(),
        migration_files().len(),
        "one row per file of sql/: {versions:?}"
    );
    let users: i64 = db
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'users'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(users, 1, "the users table exists");
    db.query(&format!("SELECT t::text FROM {table} t ORDER BY 1"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// What `migrate` needs for `db`, logging at `info` so that a notice would show.
fn migrate_settings(db: &common::TestDatabase) -> Env {
    vec![
        ("DATABASE_URL", db.url.clone()),
        ("LOG_LEVEL", "info".into()),
    ]
}

#[test]
fn migrate_applies_every_migration_and_is_a_no_op_the_second_time() {
    let db = fresh_database();
    let sandbox = Sandbox::new();
    let envs = migrate_settings(&db);

    let migrate = |which: &str| {
        let run = sandbox.run(&["migrate"], &envs, Duration::from_secs(60));
        assert_eq!(run.status.code(), Some(0), "{which}: {}", run.describe());
        (run, assert_each_migration_once(&mut db.connect()))
    };

    let (_, after_first) = migrate("first migrate");
    let (second, after_second) = migrate("second migrate");

    assert_eq!(after_first, after_second, "the second run changed nothing");
    // the server's harmless "relation ... already exists, skipping" is not for the log
    assert!(
        !second.stderr.contains("NOTICE"),
        "second migrate logs a notice: {}",
        second.stderr
    );
}

#[test]
fn two_migrate_processes_at_once_both_succeed_and_apply_each_migration_once() {
    let db = fresh_database();
    let sandbox = Sandbox::new();
    let envs = migrate_settings(&db);

    let a = sandbox.command("a", &["migrate"], &envs).spawn().unwrap();
    let b = sandbox.command("b", &["migrate"], &envs).spawn().unwrap();
    let a = sandbox.finish("a", a, Duration::from_secs(60));
    let b = sandbox.finish("b", b, Duration::from_secs(60));

    assert_eq!(a.status.code(), Some(0), "first process: {}", a.describe());
    assert_eq!(b.status.code(), Some(0), "second process: {}", b.describe());
    assert_each_migration_once(&mut db.connect());
}

#[test]
fn sql_files_apply_with_psql_as_the_postgres_image_would_and_migrate_still_succeeds() {
    // Arrange: what /docker-entrypoint-initdb.d does, twice (the files are idempotent).
    let db = fresh_database();
    let psql = common::pg::psql().expect("psql next to the PostgreSQL server binaries");
    for pass in 1..=2 {
        for file in migration_files() {
            let out = Command::new(&psql)
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-f"])
                .arg(&file)
                .output()
                .expect("run psql");
            assert!(
                out.status.success(),
                "pass {pass}, psql -f {}: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    // Act
    let sandbox = Sandbox::new();
    let run = sandbox.run(
        &["migrate"],
        &[("DATABASE_URL", db.url.clone())],
        Duration::from_secs(60),
    );

    // Assert
    assert_eq!(run.status.code(), Some(0), "{}", run.describe());
    assert_each_migration_once(&mut db.connect());
}
