//! A streaming replica of a test cluster, for the read-replica tests.
//!
//! [`Replica::of`] takes a base backup of a running [`TestCluster`] with `pg_basebackup -R`
//! (which writes `standby.signal` and the `primary_conninfo` to stream from) into a
//! temporary directory of its own, and starts it as a hot standby on a free port of
//! 127.0.0.1: it answers read-only queries and replays the primary's WAL as it comes. The
//! primary's `pg_hba.conf` from `initdb --auth=scram-sha-256` already lets local replication
//! connections in with the password, and the defaults (`wal_level=replica`,
//! `max_wal_senders=10`) allow streaming.
//!
//! The replica runs the primary's own server binaries (found through the primary's
//! postmaster), as the user that owns the primary's directory (`postgres` when the tests
//! run as root), and is cleaned up the same way: a watchdog `sh` stops it and removes its
//! directory when the test process goes away, however it goes.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::pg::{SUPERUSER, TestCluster, superuser_password};

/// A hot standby streaming from a [`TestCluster`]. Stopped and removed on drop.
pub struct Replica {
    dir: PathBuf,
    port: u16,
    bindir: PathBuf,
    /// uid and gid to run the server programs as, when not ours.
    owner: Option<(u32, u32)>,
    /// The primary's `max_connections`: a hot standby needs at least as many.
    max_connections: String,
    running: AtomicBool,
    watchdog_stdin: Mutex<Option<ChildStdin>>,
    watchdog: Mutex<Option<Child>>,
}

impl Replica {
    /// A base backup of `primary` (which must be running), started as its streaming replica.
    pub fn of(primary: &TestCluster) -> Replica {
        let bindir = server_bindir(primary);
        let meta = std::fs::metadata(primary.dir()).expect("stat the primary's directory");
        let me = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
        let owner = (meta.uid() != me).then_some((meta.uid(), meta.gid()));
        let max_connections = {
            let mut c = postgres::Client::connect(&primary.superuser_url(), postgres::NoTls)
                .expect("connect to the primary");
            c.query_one("SHOW max_connections", &[])
                .expect("SHOW max_connections")
                .get::<_, String>(0)
        };

        let dir = super::pg::private_dir("replica", owner);
        let mut replica = Replica {
            dir,
            port: 0,
            bindir,
            owner,
            max_connections,
            running: AtomicBool::new(false),
            watchdog_stdin: Mutex::new(None),
            watchdog: Mutex::new(None),
        };
        replica.start_watchdog();

        let out = replica
            .command("pg_basebackup")
            .args(["-h", "127.0.0.1", "-p", &primary.port().to_string()])
            .args(["-U", SUPERUSER, "-D"])
            .arg(replica.data_dir())
            // -R: standby.signal + primary_conninfo (with the password we connect with);
            // WAL streamed alongside, so the copy is consistent on its own
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"])
            .env("PGPASSWORD", superuser_password())
            .output()
            .expect("run pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup from the primary failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let auto_conf = std::fs::read_to_string(replica.data_dir().join("postgresql.auto.conf"))
            .unwrap_or_default();
        assert!(
            auto_conf.contains("primary_conninfo") && auto_conf.contains("password="),
            "pg_basebackup -R wrote no primary_conninfo with a password"
        );

        let mut last_error = String::new();
        for _ in 0..5 {
            replica.port = super::free_port();
            match replica.pg_ctl_start() {
                Ok(()) => return replica,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start the replica: {last_error}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A superuser URL for `dbname` on the replica.
    pub fn url(&self, dbname: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{dbname}",
            superuser_password(),
            self.port
        )
    }

    /// `primary_url` (a `postgres://` URL of the primary) with the replica's port: what
    /// `DATABASE_READ_URL` is for an app whose `DATABASE_URL` is `primary_url`.
    pub fn read_url_for(&self, primary_url: &str) -> String {
        let mut url = url_parts(primary_url);
        url.port = self.port.to_string();
        url.join()
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
        let out = self
            .command("pg_ctl")
            .args(["promote", "-w", "-t", "60", "-D"])
            .arg(self.data_dir())
            .output()
            .expect("run pg_ctl promote");
        assert!(
            out.status.success(),
            "pg_ctl promote failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    /// Stops the replica (fast shutdown).
    pub fn stop(&self) {
        super::pg::pg_ctl_stop(&self.data_dir(), "fast");
        self.running.store(false, Ordering::SeqCst);
    }

    /// Starts the replica again, on the same port, where it left off.
    pub fn start_again(&self) {
        if let Err(e) = self.pg_ctl_start() {
            panic!("could not restart the replica: {e}");
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A server program from the primary's installation, as the clusters' owner.
    fn command(&self, program: &str) -> Command {
        self.as_owner(&self.bindir.join(program))
    }

    fn as_owner(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        cmd.current_dir("/")
            .env("LC_ALL", "C")
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .env_remove("PGHOST")
            .stdin(Stdio::null());
        cmd
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let log = self.dir.join("postgres.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{}' \
             -c fsync=off -c full_page_writes=off -c max_connections={} \
             -c hot_standby=on -c wal_receiver_status_interval=1s",
            self.port,
            self.dir.display(),
            self.max_connections
        );
        super::pg::pg_ctl_start(
            self.command("pg_ctl"),
            &self.data_dir(),
            &self.bindir.join("postgres"),
            &options,
            &log,
        )?;
        self.running.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// From here on the watchdog owns the directory: it stops the server and removes the
    /// directory when our end of its stdin closes (at drop, or when the process dies).
    fn start_watchdog(&self) {
        let mut watchdog = self.as_owner(Path::new("/bin/sh"));
        watchdog
            .arg("-c")
            .arg(
                "trap '' INT TERM HUP QUIT\n\
                 while read -r _; do :; done\n\
                 \"$0\" stop -D \"$1/data\" -m immediate -w -t 60 >/dev/null 2>&1\n\
                 rm -rf \"$1\"",
            )
            .arg(self.bindir.join("pg_ctl"))
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = watchdog.spawn().expect("start the replica's watchdog (sh)");
        *self.watchdog_stdin.lock().unwrap() = child.stdin.take();
        *self.watchdog.lock().unwrap() = Some(child);
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if self.running.load(Ordering::SeqCst) {
            let _ = self
                .command("pg_ctl")
                .args(["stop", "-m", "immediate", "-w", "-t", "60", "-D"])
                .arg(self.data_dir())
                .output();
        }
        drop(self.watchdog_stdin.lock().map(|mut s| s.take()));
        if let Some(mut child) = self.watchdog.lock().ok().and_then(|mut c| c.take()) {
            let _ = child.wait();
        }
    }
}

/// The directory of the server binaries the primary runs: its postmaster's executable,
/// else the first installation that has `pg_basebackup`.
fn server_bindir(primary: &TestCluster) -> PathBuf {
    let from_postmaster = std::fs::read_to_string(primary.dir().join("data/postmaster.pid"))
        .ok()
        .and_then(|pid| {
            let pid = pid.lines().next()?.trim().to_owned();
            std::fs::read_link(format!("/proc/{pid}/exe")).ok()
        })
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let mut candidates: Vec<PathBuf> = from_postmaster.into_iter().collect();
    if let Ok(o) = Command::new("pg_config").arg("--bindir").output() {
        candidates.push(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .collect();
        dirs.sort();
        candidates.extend(dirs.into_iter().rev());
    }
    candidates
        .into_iter()
        .find(|d| d.join("pg_basebackup").is_file() && d.join("pg_ctl").is_file())
        .unwrap_or_else(|| {
            panic!(
                "pg_basebackup was not found next to the primary's server binaries: install PostgreSQL's client programs (apt-get install postgresql)"
            )
        })
}

/// A `postgres://user:password@host:port/db?query` URL, in parts.
struct UrlParts {
    head: String,
    port: String,
    tail: String,
}

fn url_parts(url: &str) -> UrlParts {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let (host_port_start, port) = match authority[host_start..].rfind(':') {
        Some(i) => (host_start + i, authority[host_start + i + 1..].to_owned()),
        None => (authority.len(), String::new()),
    };
    UrlParts {
        head: url[..authority_start + host_port_start].to_owned(),
        port,
        tail: rest[authority_end..].to_owned(),
    }
}

impl UrlParts {
    fn join(&self) -> String {
        format!("{}:{}{}", self.head, self.port, self.tail)
    }
}

#[test]
fn read_url_for_swaps_only_the_port() {
    let parts = |u: &str| {
        let mut p = url_parts(u);
        p.port = "6000".into();
        p.join()
    };
    assert_eq!(
        parts("postgres://postgres:pw@127.0.0.1:5432/user_api_1"),
        "postgres://postgres:pw@127.0.0.1:6000/user_api_1"
    );
    assert_eq!(
        parts("postgres://u:p%3A@h:1/db?sslmode=disable"),
        "postgres://u:p%3A@h:6000/db?sslmode=disable"
    );
    assert_eq!(parts("postgres://u@h/db"), "postgres://u@h:6000/db");
}
