//! The test harness's PostgreSQL launcher (`tests/common/pg.rs`) as a command, so that
//! `scripts/dev`, the bench and the shell suites start their database exactly as the
//! Rust tests do: found the same way, run as `postgres` when we are root, password
//! authentication, 127.0.0.1 on a free port. A development tool: it is not part of the
//! shipped binary.
//!
//! ```text
//! pg start DIR [--port N] [--password PW] [--database NAME] [--durable] [--set 'NAME = VALUE']...
//! pg database DIR NAME     creates NAME unless it exists; prints its URL
//! pg stop DIR [--immediate]
//! pg bindir                where the server programs are (fails when there are none)
//! ```
//!
//! `start` creates the cluster in `DIR/data` unless it is there already (an existing one
//! keeps its password and settings; `--set` lines go into `postgresql.conf` only when it is
//! created), starts it (or finds it running) and prints shell-evaluable lines: `PG_DIR`,
//! `PG_BIN`, `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PG_URL` (the superuser on the
//! `postgres` database) and, with `--database`, `DATABASE_URL` for that database (created
//! unless it exists). Without `--durable` the server runs as the tests' does, with fsync
//! and synchronous commit off. Nothing stops it when this command ends: `stop` does, and
//! the caller removes `DIR` when it wants it gone.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use common::pg::{self, Durability, TestCluster};

const USAGE: &str = "usage: pg start DIR [--port N] [--password PW] [--database NAME] [--durable] [--set 'NAME = VALUE']...
       pg database DIR NAME
       pg stop DIR [--immediate]
       pg bindir";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("start") => start(&args[1..]),
        Some("database") => database(&args[1..]),
        Some("stop") => stop(&args[1..]),
        Some("bindir") => pg::bindir()
            .map(|dir| println!("{}", dir.display()))
            .ok_or_else(|| "no PostgreSQL server binaries: apt-get install postgresql".to_owned()),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pg: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What `start` was asked for.
struct StartOptions {
    dir: PathBuf,
    port: Option<u16>,
    password: Option<String>,
    database: Option<String>,
    durability: Durability,
    settings: String,
}

fn parse_start(args: &[String]) -> Result<StartOptions, String> {
    let mut args = args.iter();
    let dir = args.next().ok_or(USAGE)?;
    let mut options = StartOptions {
        dir: absolute(Path::new(dir))?,
        port: None,
        password: None,
        database: None,
        durability: Durability::Off,
        settings: String::new(),
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => {
                let port = value()?;
                options.port = Some(port.parse().map_err(|_| format!("bad port {port:?}"))?);
            }
            "--password" => options.password = Some(url_safe(value()?, "password")?),
            "--database" => options.database = Some(url_safe(value()?, "database name")?),
            "--durable" => options.durability = Durability::Shipped,
            "--set" => {
                options.settings.push_str(value()?);
                options.settings.push('\n');
            }
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

fn start(args: &[String]) -> Result<(), String> {
    let o = parse_start(args)?;
    let password = o.password.clone().unwrap_or_else(|| {
        format!(
            "pw{:016x}{:016x}",
            common::random_u64(),
            common::random_u64()
        )
    });
    let cluster = TestCluster::start_kept(&o.dir, o.port, &password, &o.settings, o.durability)?;
    let mut lines = vec![
        ("PG_DIR", o.dir.display().to_string()),
        (
            "PG_BIN",
            pg::bindir().unwrap_or_default().display().to_string(),
        ),
        ("PGHOST", "127.0.0.1".to_owned()),
        ("PGPORT", cluster.port().to_string()),
        ("PGUSER", pg::SUPERUSER.to_owned()),
        ("PGPASSWORD", cluster.password().to_owned()),
        ("PG_URL", cluster.superuser_url()),
    ];
    if let Some(name) = &o.database {
        lines.push((
            "DATABASE_URL",
            ensure_database(&cluster.superuser_url(), name)?,
        ));
    }
    for (name, value) in lines {
        // Single quotes: every value is printable and none contains one.
        println!("{name}='{value}'");
    }
    Ok(())
}

fn database(args: &[String]) -> Result<(), String> {
    let [dir, name] = args else {
        return Err(USAGE.to_owned());
    };
    let dir = absolute(Path::new(dir))?;
    let name = url_safe(name, "database name")?;
    let port = pg::kept_port(&dir)?;
    let pwfile = dir.join("pwfile");
    let password =
        std::fs::read_to_string(&pwfile).map_err(|e| format!("read {}: {e}", pwfile.display()))?;
    let admin = format!(
        "postgres://{}:{}@127.0.0.1:{port}/postgres",
        pg::SUPERUSER,
        password.trim()
    );
    println!("{}", ensure_database(&admin, &name)?);
    Ok(())
}

fn stop(args: &[String]) -> Result<(), String> {
    let (dir, mode) = match args {
        [dir] => (dir, "fast"),
        [dir, flag] if flag == "--immediate" => (dir, "immediate"),
        _ => return Err(USAGE.to_owned()),
    };
    pg::stop_kept(&absolute(Path::new(dir))?, mode)
}

/// Creates `name` on the server `admin_url` points at unless it exists; its URL.
fn ensure_database(admin_url: &str, name: &str) -> Result<String, String> {
    let mut admin = postgres::Client::connect(admin_url, postgres::NoTls)
        .map_err(|e| format!("connect to the server as its superuser: {e}"))?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .map_err(|e| format!("look for database {name}: {e}"))?
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .map_err(|e| format!("create database {name}: {e}"))?;
    }
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url, |(base, _)| base);
    Ok(format!("{base}/{name}"))
}

/// `value`, when it needs no quoting in a URL, a shell or SQL identifier.
fn url_safe(value: &str, what: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    ok.then(|| value.to_owned())
        .ok_or_else(|| format!("the {what} {value:?} must be letters, digits, '_', '-' or '.'"))
}

fn absolute(dir: &Path) -> Result<PathBuf, String> {
    std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))
}
