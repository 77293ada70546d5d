//! A throwaway PostgreSQL for the tests, or the server `TEST_DATABASE_URL` names.
//!
//! One cluster per test binary is started on first use (`initdb` into a temporary
//! directory with a password, `postgres` on a free port of 127.0.0.1 through `pg_ctl`) and
//! each test gets its own database on it. Tests that need to stop and start the database
//! (an outage, start-up before the database) make their own [`TestCluster`].
//!
//! Cleanup does not depend on destructors: every cluster has a watchdog, a tiny `sh`
//! whose stdin is a pipe from the test process. When the test process exits, however it
//! exits, the pipe closes and the watchdog stops the server (fast shutdown, SIGINT) and
//! removes the directory. The watchdog sits in its own process group and ignores SIGINT
//! and SIGTERM, so a Ctrl-C on `cargo test` reaches the tests but not the cleanup, and
//! `pg_ctl` starts the server in a session of its own.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (as in CI) the server
//! binaries, the watchdog and the directory belong to the `postgres` user.

use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH, via `pg_config --bindir` or under /usr/lib/postgresql/*/bin: install them (apt-get install postgresql) or set TEST_DATABASE_URL to a superuser URL of a running server";

/// The superuser of every cluster the tests start.
pub const SUPERUSER: &str = "postgres";

/// Where the PostgreSQL server programs are.
struct Binaries {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    postgres: PathBuf,
    psql: Option<PathBuf>,
}

fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| find_binaries().unwrap_or_else(|| panic!("{INSTALL_HINT}")))
}

fn find_binaries() -> Option<Binaries> {
    let on_path = |name: &str| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    };
    if let (Some(initdb), Some(pg_ctl), Some(postgres)) =
        (on_path("initdb"), on_path("pg_ctl"), on_path("postgres"))
    {
        let psql = initdb.with_file_name("psql");
        let psql = if psql.is_file() {
            Some(psql)
        } else {
            on_path("psql")
        };
        return Some(Binaries {
            initdb,
            pg_ctl,
            postgres,
            psql,
        });
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let mut candidates: Vec<PathBuf> = from_pg_config.into_iter().collect();
    candidates.extend(debian_bindirs());
    candidates.into_iter().find_map(|dir| in_bindir(&dir))
}

/// `/usr/lib/postgresql/*/bin`, newest version first.
fn debian_bindirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let key = name.split('.').map(|p| p.parse().unwrap_or(0)).collect();
            (key, e.path().join("bin"))
        })
        .collect();
    versions.sort();
    versions.into_iter().rev().map(|(_, dir)| dir).collect()
}

fn in_bindir(dir: &Path) -> Option<Binaries> {
    let get = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
    Some(Binaries {
        initdb: get("initdb")?,
        pg_ctl: get("pg_ctl")?,
        postgres: get("postgres")?,
        psql: get("psql"),
    })
}

/// The path of `psql` next to the server binaries, if there is one.
pub fn psql() -> Option<PathBuf> {
    binaries().psql.clone()
}

/// The user the server programs run as, when it is not the current one.
#[derive(Clone, Copy, Debug)]
struct Owner {
    uid: u32,
    gid: u32,
}

/// `Some(postgres user)` when running as root, `None` otherwise.
fn owner() -> Option<Owner> {
    static OWNER: OnceLock<Option<Owner>> = OnceLock::new();
    *OWNER.get_or_init(|| {
        if effective_uid() != 0 {
            return None;
        }
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let owner = passwd.lines().find_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() > 3 && f[0] == "postgres").then(|| Owner {
                uid: f[2].parse().unwrap_or(0),
                gid: f[3].parse().unwrap_or(0),
            })
        });
        match owner {
            Some(o) if o.uid != 0 => Some(o),
            _ => panic!(
                "running as root and there is no `postgres` user in /etc/passwd for the test cluster: install PostgreSQL (apt-get install postgresql), run as another user, or set TEST_DATABASE_URL"
            ),
        }
    })
}

fn effective_uid() -> u32 {
    // The second number of the `Uid:` line is the effective uid.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or_else(|| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
        })
}

/// A new directory under the system's temporary one, `user-api-test-<kind>-…`, mode
/// 0700, owned by `owner` (uid, gid) when given; panics on failure.
pub fn private_dir(kind: &str, owner: Option<(u32, u32)>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "user-api-test-{kind}-{}-{:016x}",
        std::process::id(),
        super::random_u64()
    ));
    DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
    }
    dir
}

/// `pg_ctl start` on a cluster's data directory (`pg_ctl`: the command, already set up
/// to run as the directory's owner), the server given `options`; on failure, pg_ctl's
/// error and the end of the server's log.
pub fn pg_ctl_start(
    mut pg_ctl: Command,
    data_dir: &Path,
    postgres: &Path,
    options: &str,
    log: &Path,
) -> Result<(), String> {
    let out = pg_ctl
        .args(["start", "-w", "-t", "60", "-D"])
        .arg(data_dir)
        .arg("-l")
        .arg(log)
        .arg("-p")
        .arg(postgres)
        .arg("-o")
        .arg(options)
        .output()
        .map_err(|e| format!("run pg_ctl: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(5).collect();
    Err(format!(
        "{} / log: {}",
        String::from_utf8_lossy(&out.stderr).trim(),
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    ))
}

/// `pg_ctl stop -m <mode>` on a cluster's data directory, as its owner; panics on failure.
pub fn pg_ctl_stop(data_dir: &Path, mode: &str) {
    let out = pg_command(&binaries().pg_ctl)
        .args(["stop", "-m", mode, "-w", "-t", "60", "-D"])
        .arg(data_dir)
        .output()
        .unwrap_or_else(|e| panic!("run pg_ctl stop -m {mode}: {e}"));
    assert!(
        out.status.success(),
        "pg_ctl stop -m {mode} ({}) failed: {}",
        data_dir.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A command for a PostgreSQL program, as the user that owns the clusters.
fn pg_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    if let Some(o) = owner() {
        cmd.uid(o.uid).gid(o.gid);
    }
    cmd.current_dir("/")
        .env("LC_ALL", "C")
        .env_remove("PGDATA")
        .env_remove("PGPORT")
        .env_remove("PGHOST")
        .stdin(Stdio::null());
    cmd
}

/// The superuser password of every cluster this process starts: random, so a cluster
/// never accepts a guessed password, and known up front, so a test can configure the app
/// before its cluster exists.
pub fn superuser_password() -> &'static str {
    static PASSWORD: OnceLock<String> = OnceLock::new();
    PASSWORD.get_or_init(|| format!("pw{:016x}{:016x}", super::random_u64(), super::random_u64()))
}

/// A cluster's data directory, for writing files the server reads.
pub struct DataDir(PathBuf);

impl DataDir {
    /// Writes `name` (mode 0600, owned by the server's account, as PostgreSQL wants a
    /// key file), replacing it if it exists.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        if let Some(o) = owner() {
            std::os::unix::fs::chown(&path, Some(o.uid), Some(o.gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
    }

    /// Appends `lines` to `postgresql.conf`.
    pub fn configure(&self, lines: &str) {
        let path = self.0.join("postgresql.conf");
        let mut conf = std::fs::read_to_string(&path).expect("read postgresql.conf");
        conf.push('\n');
        conf.push_str(lines);
        conf.push('\n');
        self.write("postgresql.conf", conf);
    }
}

/// A PostgreSQL cluster of its own, in a temporary directory, on 127.0.0.1.
pub struct TestCluster {
    dir: PathBuf,
    port: u16,
    running: AtomicBool,
    /// The watchdog's stdin; dropping it (or the process ending) triggers the cleanup.
    watchdog_stdin: Mutex<Option<ChildStdin>>,
    watchdog: Mutex<Option<Child>>,
}

impl TestCluster {
    /// Initialises a cluster and starts it on a free port (retrying on a lost race).
    pub fn start() -> TestCluster {
        TestCluster::start_prepared(|_| {})
    }

    /// Initialises a cluster, lets `prepare` write files into its data directory (server
    /// settings, `pg_hba.conf`, certificates), then starts it on a free port.
    pub fn start_prepared(prepare: impl FnOnce(&DataDir)) -> TestCluster {
        let mut cluster = TestCluster::init();
        prepare(&DataDir(cluster.data_dir()));
        let mut last_error = String::new();
        for _ in 0..5 {
            cluster.port = super::free_port();
            match cluster.pg_ctl_start() {
                Ok(()) => return cluster,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start the test PostgreSQL cluster: {last_error}");
    }

    /// Writes a file into the data directory, as `start_prepared`'s `prepare` does, for
    /// a change the running server picks up on `reload`.
    pub fn data_dir_files(&self) -> DataDir {
        DataDir(self.data_dir())
    }

    /// Makes the server re-read its configuration files (and its TLS certificates).
    pub fn reload(&self) {
        let out = pg_command(&binaries().pg_ctl)
            .args(["reload", "-D"])
            .arg(self.data_dir())
            .output()
            .expect("run pg_ctl reload");
        assert!(
            out.status.success(),
            "pg_ctl reload failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    /// Initialises a cluster and starts it on `port`.
    pub fn start_on_port(port: u16) -> TestCluster {
        let mut cluster = TestCluster::init();
        cluster.port = port;
        if let Err(e) = cluster.pg_ctl_start() {
            panic!("could not start the test PostgreSQL cluster on port {port}: {e}");
        }
        cluster
    }

    /// Stops the server (fast shutdown: sessions are ended, nothing waits for them).
    pub fn stop(&self) {
        pg_ctl_stop(&self.data_dir(), "fast");
        self.running.store(false, Ordering::SeqCst);
    }

    /// Stops the server the way a crash would (immediate shutdown: every process quits
    /// at once, no checkpoint; the next start runs crash recovery).
    pub fn stop_immediate(&self) {
        pg_ctl_stop(&self.data_dir(), "immediate");
        self.running.store(false, Ordering::SeqCst);
    }

    /// Starts the server again on the same port, with the same data.
    pub fn start_again(&self) {
        if let Err(e) = self.pg_ctl_start() {
            panic!("could not restart the test PostgreSQL cluster: {e}");
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory (data, log, socket), removed with the cluster.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A URL for `dbname` as the superuser.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{dbname}",
            superuser_password(),
            self.port
        )
    }

    /// A URL for the `postgres` database as the superuser.
    pub fn superuser_url(&self) -> String {
        self.url("postgres")
    }

    /// A fresh, empty database on this cluster.
    pub fn create_database(&self) -> TestDatabase {
        create_database(&self.superuser_url())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Creates the directory, its watchdog and the cluster (not yet started).
    fn init() -> TestCluster {
        let bins = binaries();
        let owner = owner();
        let dir = private_dir("pg", owner.map(|o| (o.uid, o.gid)));

        // From here on the watchdog owns the directory: it removes it when we go away.
        let mut watchdog = pg_command(Path::new("/bin/sh"));
        watchdog
            .arg("-c")
            .arg(
                "trap '' INT TERM HUP QUIT\n\
                 while read -r _; do :; done\n\
                 \"$0\" stop -D \"$1/data\" -m fast -w -t 60 >/dev/null 2>&1\n\
                 rm -rf \"$1\"",
            )
            .arg(&bins.pg_ctl)
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = watchdog.spawn().expect("start the cluster's watchdog (sh)");
        let stdin = child.stdin.take();
        let cluster = TestCluster {
            dir,
            port: 0,
            running: AtomicBool::new(false),
            watchdog_stdin: Mutex::new(stdin),
            watchdog: Mutex::new(Some(child)),
        };

        let pwfile = cluster.dir.join("pwfile");
        std::fs::write(&pwfile, superuser_password()).expect("write the password file");
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the password file");
        if let Some(o) = owner {
            std::os::unix::fs::chown(&pwfile, Some(o.uid), Some(o.gid))
                .expect("chown the password file");
        }
        let out = pg_command(&bins.initdb)
            .arg("-D")
            .arg(cluster.data_dir())
            .args(["-U", SUPERUSER, "--auth=scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        cluster
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let bins = binaries();
        let log = self.dir.join("postgres.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c unix_socket_directories='{}' -c max_connections=300 \
             -c max_wal_size=64MB -c min_wal_size=32MB",
            self.port,
            self.dir.display()
        );
        pg_ctl_start(
            pg_command(&bins.pg_ctl),
            &self.data_dir(),
            &bins.postgres,
            &options,
            &log,
        )?;
        self.running.store(true, Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.running.load(Ordering::SeqCst) {
            let _ = pg_command(&binaries().pg_ctl)
                .args(["stop", "-m", "immediate", "-w", "-t", "60", "-D"])
                .arg(self.data_dir())
                .output();
        }
        // Closing the pipe lets the watchdog remove the directory; wait so that it is gone
        // when the test ends.
        drop(self.watchdog_stdin.lock().map(|mut s| s.take()));
        if let Some(mut child) = self.watchdog.lock().ok().and_then(|mut c| c.take()) {
            let _ = child.wait();
        }
    }
}

/// The server every test of this binary shares.
enum SharedServer {
    Own(TestCluster),
    External { admin_url: String },
}

fn shared() -> &'static SharedServer {
    static SHARED: OnceLock<SharedServer> = OnceLock::new();
    SHARED.get_or_init(|| match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => SharedServer::External { admin_url: url },
        _ => SharedServer::Own(TestCluster::start()),
    })
}

/// A database of its own for one test: `user_api_<random>`, empty (the app migrates it).
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    /// A new connection to this database, for arranging and asserting.
    pub fn connect(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to the test database {}: {e}", self.name))
    }

    /// Ends every session on this database (the app's pool, once the app has stopped).
    pub fn terminate_sessions(&self) {
        let _ = with_admin(&self.admin_url, |admin| {
            admin
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&self.name],
                )
                .map(drop)
        });
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Dropped as each test ends, so that neither a server we were lent nor our own
        // cluster's directory (removed at exit) piles up a database per test.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let _ = with_admin(&self.admin_url, |admin| admin.batch_execute(&sql));
    }
}

/// Runs `op` on a superuser connection to `admin_url`, reusing one across tests: a
/// SCRAM handshake costs a noticeable fraction of a second in a debug build.
fn with_admin<T>(
    admin_url: &str,
    op: impl Fn(&mut postgres::Client) -> Result<T, postgres::Error>,
) -> Result<T, postgres::Error> {
    static IDLE: Mutex<Vec<(String, postgres::Client)>> = Mutex::new(Vec::new());
    let take = || {
        let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
        let i = idle
            .iter()
            .position(|(url, c)| url == admin_url && !c.is_closed())?;
        Some(idle.swap_remove(i).1)
    };
    let (mut client, reused) = match take() {
        Some(c) => (c, true),
        None => (
            postgres::Client::connect(admin_url, postgres::NoTls)?,
            false,
        ),
    };
    let result = match op(&mut client) {
        // A kept connection may have died with its server (a test restarts clusters).
        Err(_) if reused && client.is_closed() => {
            client = postgres::Client::connect(admin_url, postgres::NoTls)?;
            op(&mut client)
        }
        other => other,
    };
    if !client.is_closed() {
        let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
        idle.push((admin_url.to_owned(), client));
    }
    result
}

/// A fresh database on the shared server.
pub fn fresh_database() -> TestDatabase {
    match shared() {
        SharedServer::Own(cluster) => create_database(&cluster.superuser_url()),
        SharedServer::External { admin_url } => create_database(admin_url),
    }
}

fn create_database(admin_url: &str) -> TestDatabase {
    let name = format!("user_api_{:016x}", super::random_u64());
    with_admin(admin_url, |admin| {
        admin.batch_execute(&format!("CREATE DATABASE \"{name}\""))
    })
    .unwrap_or_else(|e| panic!("create database {name} on the test PostgreSQL: {e}"));
    TestDatabase {
        url: with_dbname(admin_url, &name),
        name,
        admin_url: admin_url.to_owned(),
    }
}

/// The same connection string with another database name, in URL or key=value form.
fn with_dbname(conn: &str, dbname: &str) -> String {
    let Some(scheme_end) = conn.find("://") else {
        return format!("{conn} dbname={dbname}");
    };
    let (base, query) = match conn.find('?') {
        Some(q) => conn.split_at(q),
        None => (conn, ""),
    };
    let authority_start = scheme_end + 3;
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{dbname}{query}")
}

#[test]
fn with_dbname_replaces_the_database_in_every_form() {
    for (given, expected) in [
        ("postgres://u:p@h:1/db", "postgres://u:p@h:1/x"),
        ("postgres://u:p@h:1", "postgres://u:p@h:1/x"),
        (
            "postgresql://u@h/db?sslmode=disable",
            "postgresql://u@h/x?sslmode=disable",
        ),
        ("host=h user=u", "host=h user=u dbname=x"),
    ] {
        assert_eq!(with_dbname(given, "x"), expected, "{given}");
    }
}

/// Waits until at least `n` sessions on `dbname` wait for a lock (requests blocked behind
/// a test's `LOCK TABLE`). Returns whether they did within `timeout`.
pub fn wait_for_lock_waiters(
    client: &mut postgres::Client,
    dbname: &str,
    n: i64,
    timeout: std::time::Duration,
) -> bool {
    super::poll_until(timeout, || {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = $1 AND wait_event_type = 'Lock'",
                &[&dbname],
            )
            .ok()?
            .get(0);
        (waiting >= n).then_some(())
    })
    .is_some()
}
