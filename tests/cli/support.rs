//! What the binary's tests share: a sandboxed run of `user-api`, a `serve` in the
//! background, signals, and a valid configuration.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

pub use crate::common::pg::{superuser_password, wait_for_lock_waiters};
pub(crate) use crate::common::{
    self, TempDir, TestCluster, free_port, fresh_database, get_in_background, lock_users,
    poll_until, spawn_app,
};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_user-api");

/// Environment variables for one run.
pub type Env = Vec<(&'static str, String)>;

/// What a finished run left behind.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    pub fn describe(&self) -> String {
        format!(
            "exit {:?}, stdout {:?}, stderr {:?}",
            self.status.code(),
            self.stdout,
            self.stderr
        )
    }

    /// The one non-empty line on stderr; panics, saying `context`, on none or several.
    pub fn one_stderr_line(&self, context: &str) -> &str {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {context}");
        lines[0]
    }
}

/// A working directory of its own for the binary, with its output files.
pub struct Sandbox {
    pub dir: TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: TempDir::new("user-api-cli"),
        }
    }

    /// The binary with `args`, an empty environment but `PATH` and `envs`, run in the
    /// sandbox, its output going to files there.
    pub fn command(&self, name: &str, args: &[&str], envs: &[(&str, String)]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(File::create(self.out_path(name, "stdout")).unwrap())
            .stderr(File::create(self.out_path(name, "stderr")).unwrap());
        cmd
    }

    pub fn out_path(&self, name: &str, stream: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.{stream}"))
    }

    pub fn read(&self, name: &str, stream: &str) -> String {
        std::fs::read_to_string(self.out_path(name, stream)).unwrap_or_default()
    }

    /// Runs the binary to its end; panics if it takes longer than `timeout`.
    pub fn run(&self, args: &[&str], envs: &[(&str, String)], timeout: Duration) -> Run {
        let name = format!("run{:08x}", common::random_u64() as u32);
        let child = self
            .command(&name, args, envs)
            .spawn()
            .expect("start user-api");
        self.finish(&name, child, timeout)
    }

    pub fn finish(&self, name: &str, mut child: Child, timeout: Duration) -> Run {
        let status = wait_with_deadline(&mut child, timeout).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "user-api did not finish within {timeout:?}; stderr: {}",
                self.read(name, "stderr")
            )
        });
        Run {
            status,
            stdout: self.read(name, "stdout"),
            stderr: self.read(name, "stderr"),
        }
    }
}

pub fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    poll_until(timeout, || child.try_wait().ok().flatten())
}

pub fn sigterm(child: &Child) {
    signal(child, "TERM");
}

/// Sends `SIG{name}` to `child`.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {}", child.id());
}

/// A `user-api serve` running in the background; killed on drop if still running.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    name: String,
    sandbox: Sandbox,
}

impl ServerProcess {
    /// Starts `user-api serve` on a free port and waits until `/health/live` answers.
    pub fn start(envs: &[(&str, String)]) -> ServerProcess {
        ServerProcess::start_with_dotenv(envs, None)
    }

    /// As [`ServerProcess::start`], with `dotenv` as the `.env` file of its working
    /// directory.
    pub fn start_with_dotenv(envs: &[(&str, String)], dotenv: Option<&str>) -> ServerProcess {
        let mut last = String::new();
        for attempt in 0..3 {
            let sandbox = Sandbox::new();
            if let Some(text) = dotenv {
                sandbox.dir.write(".env", text);
            }
            let port = free_port();
            let name = format!("serve{attempt}");
            let mut envs = envs.to_vec();
            envs.push(("BIND", format!("127.0.0.1:{port}")));
            let child = sandbox
                .command(&name, &["serve"], &envs)
                .spawn()
                .expect("start user-api serve");
            let mut server = ServerProcess {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                name,
                sandbox,
            };
            let live = poll_until(Duration::from_secs(30), || {
                if server.child.try_wait().ok().flatten().is_some() {
                    return Some(false);
                }
                let r = common::client::send(server.addr, "GET", "/health/live", &[], None);
                r.ok().filter(|r| r.status == 200).map(|_| true)
            });
            // Ready too: the pool opens its connections in the background.
            let ready = live == Some(true)
                && poll_until(Duration::from_secs(30), || {
                    server.get("/health/ready").ok().filter(|r| r.status == 200)
                })
                .is_some();
            if ready {
                return server;
            }
            // Lost the port to someone else, or it failed: try again, then report.
            last = server.stderr();
        }
        panic!("user-api serve did not become live; stderr: {last}");
    }

    pub fn stderr(&self) -> String {
        self.sandbox.read(&self.name, "stderr")
    }

    /// `GET target` with `headers`, on a connection of its own.
    pub fn get_with(
        &self,
        target: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<common::HttpResponse> {
        common::client::send(self.addr, "GET", target, headers, None)
    }

    pub fn get(&self, target: &str) -> std::io::Result<common::HttpResponse> {
        self.get_with(target, &[])
    }

    /// `POST target` with a JSON `body`; panics if no answer comes.
    pub fn post_json(&self, target: &str, body: &[u8]) -> common::HttpResponse {
        common::client::send(
            self.addr,
            "POST",
            target,
            &[("Content-Type", "application/json")],
            Some(body),
        )
        .expect("an answer to the POST")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A complete, valid configuration for a database nobody listens on.
pub fn valid_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "DATABASE_URL",
            format!("postgres://app:app-pw@127.0.0.1:{}/app", free_port()),
        ),
        ("DB_CONNECT_TIMEOUT", "1".into()),
        ("LOG_LEVEL", "error".into()),
    ]
}

/// `user-api keys new NAME --scope SCOPES`: the secret, then its keys-file line.
pub fn new_key(sandbox: &Sandbox, name: &str, scopes: &str) -> (String, String) {
    let run = sandbox.run(
        &["keys", "new", name, "--scope", scopes],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(run.status.code(), Some(0), "{}", run.describe());
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "exactly two lines: {}", run.describe());
    (lines[0].to_owned(), lines[1].to_owned())
}
