//! A throwaway PostgreSQL for the tests, or the server `TEST_DATABASE_URL` names; the
//! one launcher of the repository (scripts reach it through `examples/pg.rs`).
//!
//! One cluster per test binary is started on first use (`initdb` into a temporary
//! directory with a password, `postgres` on a free port of 127.0.0.1 through `pg_ctl`) and
//! each test gets its own database on it. Tests that need to stop and start the database
//! (an outage, start-up before the database) make their own [`TestCluster`]; the
//! read-replica tests stream a [`Replica`] from one.
//!
//! Cleanup does not depend on destructors: every temporary server has a watchdog, a tiny
//! `sh` whose stdin is a pipe from the test process. When the test process exits, however
//! it exits, the pipe closes and the watchdog stops the server (immediate shutdown) and
//! removes the directory. The watchdog sits in its own process group and ignores SIGINT
//! and SIGTERM, so a Ctrl-C on `cargo test` reaches the tests but not the cleanup, and
//! `pg_ctl` starts the server in a session of its own. A kept cluster
//! ([`TestCluster::start_kept`], for scripts) has no watchdog.
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
use std::time::Duration;

const INSTALL_HINT: &str = "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH, via `pg_config --bindir` or under /usr/lib/postgresql/*/bin: install them (apt-get install postgresql) or set TEST_DATABASE_URL to a superuser URL of a running server";

/// The superuser of every cluster the tests start.
pub const SUPERUSER: &str = "postgres";

/// Where the PostgreSQL server programs are.
struct Binaries {
    initdb: PathBuf,
    pg_ctl: PathBuf,
    postgres: PathBuf,
    psql: Option<PathBuf>,
    pg_basebackup: Option<PathBuf>,
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
        // The client programs of the same installation, else any on PATH.
        let beside = |name: &str| {
            Some(initdb.with_file_name(name))
                .filter(|p| p.is_file())
                .or_else(|| on_path(name))
        };
        return Some(Binaries {
            psql: beside("psql"),
            pg_basebackup: beside("pg_basebackup"),
            initdb,
            pg_ctl,
            postgres,
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
        pg_basebackup: get("pg_basebackup"),
    })
}

/// The directory of the server programs the clusters run (links resolved, so the other
/// programs of that installation, `pgbench` say, are beside them), if there are any.
pub fn bindir() -> Option<PathBuf> {
    let postgres = find_binaries()?.postgres;
    let postgres = std::fs::canonicalize(&postgres).unwrap_or(postgres);
    postgres.parent().map(Path::to_path_buf)
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

/// Runs `cmd` to its end; on failure, `what` and the command's error output.
fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("run {what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    ))
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
        write_private(&self.0.join(name), contents.as_ref());
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

/// Writes `path` with mode 0600, owned by the server's account; panics on failure.
fn write_private(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    if let Some(o) = owner() {
        std::os::unix::fs::chown(path, Some(o.uid), Some(o.gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

/// How fast and how safe a server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// No fsync, asynchronous commit: tests lose nothing they care about in a crash of
    /// the machine, and run faster.
    Off,
    /// As PostgreSQL ships (fsync and synchronous commit on), for figures that should
    /// include a real WAL flush per commit (the bench) and data kept between runs.
    Shipped,
}

/// One server's directory (`data/`, `postgres.log`, the Unix socket) on a port of
/// 127.0.0.1, and the cleanup that goes with it: what a cluster and a replica share.
struct Server {
    dir: PathBuf,
    port: u16,
    durability: Durability,
    /// Settings for this kind of server on top of the common ones (`-c name=value ...`).
    extra_options: String,
    running: AtomicBool,
    /// The watchdog's stdin and process; `None` for a cluster that is kept on purpose.
    watchdog: Mutex<Option<(ChildStdin, Child)>>,
}

impl Server {
    /// A new private temporary directory whose watchdog stops the server and removes the
    /// directory when this process goes away, however it goes.
    fn temporary(kind: &str, extra_options: &str) -> Server {
        let dir = private_dir(kind, owner().map(|o| (o.uid, o.gid)));
        let mut watchdog = pg_command(Path::new("/bin/sh"));
        watchdog
            .arg("-c")
            .arg(
                "trap '' INT TERM HUP QUIT\n\
                 while read -r _; do :; done\n\
                 \"$0\" stop -D \"$1/data\" -m immediate -w -t 60 >/dev/null 2>&1\n\
                 rm -rf \"$1\"",
            )
            .arg(&binaries().pg_ctl)
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = watchdog.spawn().expect("start the cluster's watchdog (sh)");
        let stdin = child.stdin.take().expect("the watchdog's stdin is piped");
        Server {
            dir,
            port: 0,
            durability: Durability::Off,
            extra_options: extra_options.to_owned(),
            running: AtomicBool::new(false),
            watchdog: Mutex::new(Some((stdin, child))),
        }
    }

    /// `dir`, created (mode 0700, owned by the server's account) if it does not exist,
    /// with no watchdog: the server outlives this process until someone stops it.
    fn kept(dir: &Path, durability: Durability) -> Result<Server, String> {
        if !dir.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        if let Some(o) = owner() {
            std::os::unix::fs::chown(dir, Some(o.uid), Some(o.gid))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
            // The server's account must be able to reach the directory: mktemp -d and
            // friends make private parents.
            if let Some(parent) = dir.parent() {
                let mode = std::fs::metadata(parent).map_or(0, |m| m.permissions().mode());
                if mode & 0o001 == 0 {
                    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(mode | 0o001))
                        .map_err(|e| format!("chmod o+x {}: {e}", parent.display()))?;
                }
            }
        }
        Ok(Server {
            dir: dir.to_path_buf(),
            port: 0,
            durability,
            extra_options: String::new(),
            running: AtomicBool::new(false),
            watchdog: Mutex::new(None),
        })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `pg_ctl <args> -D <data>` as the server's account; on failure, pg_ctl's error.
    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let mut pg_ctl = pg_command(&binaries().pg_ctl);
        pg_ctl.args(args).arg("-D").arg(self.data_dir());
        run(pg_ctl, &format!("pg_ctl {}", args.join(" ")))
    }

    /// Starts the server on `self.port`; on failure, pg_ctl's error and the end of the
    /// server's log.
    fn start(&self) -> Result<(), String> {
        let log = self.dir.join("postgres.log");
        let mut options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' \
             -c max_connections=300",
            self.port,
            self.dir.display()
        );
        if self.durability == Durability::Off {
            options.push_str(
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
                 -c max_wal_size=64MB -c min_wal_size=32MB",
            );
        }
        if !self.extra_options.is_empty() {
            options.push(' ');
            options.push_str(&self.extra_options);
        }
        let log_arg = log.display().to_string();
        let postgres = binaries().postgres.display().to_string();
        let started = self.pg_ctl(&[
            "start", "-w", "-t", "60", "-l", &log_arg, "-p", &postgres, "-o", &options,
        ]);
        if let Err(e) = started {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!("{e} / log: {}", tail.join(" | ")));
        }
        self.running.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Starts the server on a free port, retrying with another when it loses the port to
    /// another process.
    fn start_on_a_free_port(&mut self) -> Result<(), String> {
        let mut last_error = String::new();
        for _ in 0..5 {
            self.port = super::free_port();
            match self.start() {
                Ok(()) => return Ok(()),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// `pg_ctl stop -m <mode>`: `fast` ends sessions, `immediate` is what a crash does.
    fn stop(&self, mode: &str) -> Result<(), String> {
        self.pg_ctl(&["stop", "-m", mode, "-w", "-t", "60"])?;
        self.running.store(false, Ordering::SeqCst);
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some((stdin, mut watchdog)) = self.watchdog.lock().ok().and_then(|mut w| w.take())
        else {
            return; // kept on purpose
        };
        if self.running.load(Ordering::SeqCst) {
            let _ = self.stop("immediate");
        }
        // Closing the pipe lets the watchdog remove the directory; wait so that it is gone
        // when the test ends.
        drop(stdin);
        let _ = watchdog.wait();
    }
}

/// A PostgreSQL cluster of its own, on 127.0.0.1: in a temporary directory removed when
/// the test process ends, or (for scripts, through `examples/pg.rs`) in a directory kept.
pub struct TestCluster {
    server: Server,
    password: String,
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
        prepare(&cluster.data_dir_files());
        if let Err(e) = cluster.server.start_on_a_free_port() {
            panic!("could not start the test PostgreSQL cluster: {e}");
        }
        cluster
    }

    /// Initialises a cluster and starts it on `port`.
    pub fn start_on_port(port: u16) -> TestCluster {
        let mut cluster = TestCluster::init();
        cluster.server.port = port;
        if let Err(e) = cluster.server.start() {
            panic!("could not start the test PostgreSQL cluster on port {port}: {e}");
        }
        cluster
    }

    /// Starts the cluster kept in `dir` on `port` (or a free one), first creating it there
    /// with `password` and the `settings` lines in `postgresql.conf` when `dir` holds none
    /// yet (an existing cluster keeps its password and settings). Nothing stops or
    /// removes it when this process ends: [`stop_kept`] stops it.
    pub fn start_kept(
        dir: &Path,
        port: Option<u16>,
        password: &str,
        settings: &str,
        durability: Durability,
    ) -> Result<TestCluster, String> {
        let server = Server::kept(dir, durability)?;
        let pwfile = dir.join("pwfile");
        let mut cluster = if server.data_dir().join("PG_VERSION").is_file() {
            let password = std::fs::read_to_string(&pwfile)
                .map_err(|e| format!("read {}: {e}", pwfile.display()))?;
            TestCluster {
                server,
                password: password.trim().to_owned(),
            }
        } else {
            let cluster = TestCluster {
                server,
                password: password.to_owned(),
            };
            cluster.initdb();
            if !settings.is_empty() {
                cluster.data_dir_files().configure(settings);
            }
            cluster
        };
        if cluster.server.pg_ctl(&["status"]).is_ok() {
            // Left running (a script killed before it could stop it): use it as it is.
            cluster.server.port = kept_port(dir)?;
            return Ok(cluster);
        }
        match port {
            Some(port) => {
                cluster.server.port = port;
                cluster.server.start()?;
            }
            None => cluster.server.start_on_a_free_port()?,
        }
        Ok(cluster)
    }

    /// Writes a file into the data directory, as `start_prepared`'s `prepare` does, for
    /// a change the running server picks up on `reload`.
    pub fn data_dir_files(&self) -> DataDir {
        DataDir(self.server.data_dir())
    }

    /// Makes the server re-read its configuration files (and its TLS certificates).
    pub fn reload(&self) {
        self.server
            .pg_ctl(&["reload"])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops the server (fast shutdown: sessions are ended, nothing waits for them).
    pub fn stop(&self) {
        self.server.stop("fast").unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops the server the way a crash would (immediate shutdown: every process quits
    /// at once, no checkpoint; the next start runs crash recovery).
    pub fn stop_immediate(&self) {
        self.server
            .stop("immediate")
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts the server again on the same port, with the same data.
    pub fn start_again(&self) {
        if let Err(e) = self.server.start() {
            panic!("could not restart the test PostgreSQL cluster: {e}");
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The cluster's directory (data, log, socket), removed with the cluster.
    pub fn dir(&self) -> &Path {
        &self.server.dir
    }

    /// A URL for `dbname` as the superuser.
    pub fn url(&self, dbname: &str) -> String {
        superuser_url_on(self.server.port, &self.password, dbname)
    }

    /// A URL for the `postgres` database as the superuser.
    pub fn superuser_url(&self) -> String {
        self.url("postgres")
    }

    /// A fresh, empty database on this cluster.
    pub fn create_database(&self) -> TestDatabase {
        create_database(&self.superuser_url())
    }

    /// A temporary directory, its watchdog and the cluster (not yet started).
    fn init() -> TestCluster {
        let cluster = TestCluster {
            server: Server::temporary("pg", ""),
            password: superuser_password().to_owned(),
        };
        cluster.initdb();
        cluster
    }

    fn initdb(&self) {
        let pwfile = self.server.dir.join("pwfile");
        write_private(&pwfile, self.password.as_bytes());
        let mut initdb = pg_command(&binaries().initdb);
        initdb
            .arg("-D")
            .arg(self.server.data_dir())
            .args(["-U", SUPERUSER, "--auth=scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()));
        run(initdb, "initdb").unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Stops the cluster kept in `dir` (`fast`, or `immediate` as a crash would), if it runs.
pub fn stop_kept(dir: &Path, mode: &str) -> Result<(), String> {
    let server = Server::kept(dir, Durability::Shipped)?;
    if !server.data_dir().join("postmaster.pid").is_file() {
        return Ok(());
    }
    server.stop(mode)
}

/// The port of the server running in the kept cluster `dir` (from its `postmaster.pid`).
pub fn kept_port(dir: &Path) -> Result<u16, String> {
    let pidfile = dir.join("data/postmaster.pid");
    let text = std::fs::read_to_string(&pidfile).map_err(|e| {
        format!(
            "{} is not running ({}: {e})",
            dir.display(),
            pidfile.display()
        )
    })?;
    // postmaster.pid: pid, data directory, start time, port, ...
    text.lines()
        .nth(3)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("no port in {}", pidfile.display()))
}

/// A superuser URL for `dbname` on a server of ours on `port`.
fn superuser_url_on(port: u16, password: &str, dbname: &str) -> String {
    format!("postgres://{SUPERUSER}:{password}@127.0.0.1:{port}/{dbname}")
}

/// A hot standby streaming from a [`TestCluster`], in a temporary directory of its own on
/// a free port of 127.0.0.1: it answers read-only queries and replays the primary's WAL
/// as it comes. Stopped and removed on drop.
///
/// It is a base backup of the primary by `pg_basebackup -R` (which writes
/// `standby.signal` and the `primary_conninfo` to stream from). The primary's
/// `pg_hba.conf` from `initdb --auth=scram-sha-256` already lets local replication
/// connections in with the password, and the defaults (`wal_level=replica`,
/// `max_wal_senders=10`) allow streaming.
pub struct Replica {
    server: Server,
    password: String,
}

impl Replica {
    /// A base backup of `primary` (which must be running), started as its streaming replica.
    pub fn of(primary: &TestCluster) -> Replica {
        let mut server = Server::temporary(
            "replica",
            "-c hot_standby=on -c wal_receiver_status_interval=1s",
        );
        let pg_basebackup = binaries().pg_basebackup.as_deref().unwrap_or_else(|| {
            panic!(
                "pg_basebackup was not found next to the PostgreSQL server binaries: install PostgreSQL's client programs (apt-get install postgresql)"
            )
        });
        let mut basebackup = pg_command(pg_basebackup);
        basebackup
            .args(["-h", "127.0.0.1", "-p", &primary.port().to_string()])
            .args(["-U", SUPERUSER, "-D"])
            .arg(server.data_dir())
            // -R: standby.signal + primary_conninfo (with the password we connect with);
            // WAL streamed alongside, so the copy is consistent on its own
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"])
            .env("PGPASSWORD", primary.password());
        run(basebackup, "pg_basebackup from the primary").unwrap_or_else(|e| panic!("{e}"));
        let auto_conf = std::fs::read_to_string(server.data_dir().join("postgresql.auto.conf"))
            .unwrap_or_default();
        assert!(
            auto_conf.contains("primary_conninfo") && auto_conf.contains("password="),
            "pg_basebackup -R wrote no primary_conninfo with a password"
        );
        if let Err(e) = server.start_on_a_free_port() {
            panic!("could not start the replica: {e}");
        }
        Replica {
            server,
            password: primary.password().to_owned(),
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// A superuser URL for `dbname` on the replica.
    pub fn url(&self, dbname: &str) -> String {
        superuser_url_on(self.server.port, &self.password, dbname)
    }

    /// `primary_url` (a `postgres://` URL of the primary) with the replica's port: what
    /// `DATABASE_READ_URL` is for an app whose `DATABASE_URL` is `primary_url`.
    pub fn read_url_for(&self, primary_url: &str) -> String {
        with_port(primary_url, self.server.port)
    }

    /// A new superuser connection to `dbname` on the replica.
    pub fn connect(&self, dbname: &str) -> postgres::Client {
        postgres::Client::connect(&self.url(dbname), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to the replica: {e}"))
    }

    /// Waits until the replica has replayed everything the primary had written when this
    /// was called. Returns whether it did within `timeout`.
    ///
    /// The test clusters commit asynchronously (`synchronous_commit=off`): a commit the
    /// client has seen may still sit in the primary's WAL buffers, past
    /// `pg_current_wal_lsn()` (what was written out), so the target is the insert position.
    pub fn wait_caught_up(&self, primary: &TestCluster, timeout: Duration) -> bool {
        let target: String = {
            let mut p = postgres::Client::connect(&primary.superuser_url(), postgres::NoTls)
                .expect("connect to the primary");
            p.query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
                .expect("read the primary's WAL position")
                .get(0)
        };
        let mut replica = self.connect("postgres");
        super::poll_until(timeout, || {
            replica
                .query_one(
                    "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
                    &[&target],
                )
                .ok()?
                .get::<_, bool>(0)
                .then_some(())
        })
        .is_some()
    }

    /// Pauses WAL replay: the replica goes on answering, from what it has replayed so far.
    pub fn pause_replay(&self) {
        let mut c = self.connect("postgres");
        c.batch_execute("SELECT pg_wal_replay_pause()")
            .expect("pause replay");
        let paused = super::poll_until(Duration::from_secs(10), || {
            let state: String = c
                .query_one("SELECT pg_get_wal_replay_pause_state()", &[])
                .ok()?
                .get(0);
            (state == "paused").then_some(())
        });
        assert!(paused.is_some(), "replay did not pause within 10 s");
    }

    pub fn resume_replay(&self) {
        self.connect("postgres")
            .batch_execute("SELECT pg_wal_replay_resume()")
            .expect("resume replay");
    }

    /// Promotes the replica to a primary (`pg_ctl promote`, waiting until it accepts
    /// writes), as a cluster manager does when the primary is lost.
    pub fn promote(&self) {
        self.server
            .pg_ctl(&["promote", "-w", "-t", "60"])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops the replica (fast shutdown).
    pub fn stop(&self) {
        self.server.stop("fast").unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts the replica again, on the same port, where it left off.
    pub fn start_again(&self) {
        if let Err(e) = self.server.start() {
            panic!("could not restart the replica: {e}");
        }
    }
}

/// A `postgres://user:password@host:port/db?query` URL with another port.
fn with_port(url: &str, port: u16) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_end = authority[host_start..]
        .rfind(':')
        .map_or(authority.len(), |i| host_start + i);
    format!(
        "{}:{port}{}",
        &url[..authority_start + host_end],
        &rest[authority_end..]
    )
}

#[test]
fn with_port_swaps_only_the_port() {
    assert_eq!(
        with_port("postgres://postgres:pw@127.0.0.1:5432/user_api_1", 6000),
        "postgres://postgres:pw@127.0.0.1:6000/user_api_1"
    );
    assert_eq!(
        with_port("postgres://u:p%3A@h:1/db?sslmode=disable", 6000),
        "postgres://u:p%3A@h:6000/db?sslmode=disable"
    );
    assert_eq!(
        with_port("postgres://u@h/db", 6000),
        "postgres://u@h:6000/db"
    );
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
