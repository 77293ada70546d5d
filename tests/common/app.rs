//! The app under test, in process: configured through the library, bound to
//! 127.0.0.1:0, served on a thread, with one helper per route.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::Once;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::{self, HttpConnection, HttpResponse};
use super::pg::{TestCluster, TestDatabase, fresh_database};

/// A running app with its own database. Stopped on drop.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db_url: String,
    pub db_name: String,
    /// The token the helpers send, when the app was given `API_TOKEN`.
    pub token: Option<String>,
    stop: Option<Box<dyn FnOnce() + Send>>,
    thread: Option<JoinHandle<()>>,
    database: TestDatabase,
}

/// The app with the defaults, on a fresh database of the shared cluster.
pub fn spawn_app() -> TestApp {
    spawn_app_with(|_| {})
}

/// The app with settings changed by `configure` (which sees and edits the environment
/// the app is built from), on a fresh database of the shared cluster.
pub fn spawn_app_with(configure: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
    spawn(fresh_database(), configure)
}

/// The app on a fresh database of `cluster`, for tests that stop and start the database.
pub fn spawn_app_on(
    cluster: &TestCluster,
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    spawn(cluster.create_database(), configure)
}

/// The app on `database`, for tests that set the database up before the app starts.
pub fn spawn_app_in(
    database: TestDatabase,
    configure: impl FnOnce(&mut HashMap<String, String>),
) -> TestApp {
    spawn(database, configure)
}

/// The environment a test app is built from, before a test changes it.
pub fn base_vars(db_url: &str) -> HashMap<String, String> {
    let log_level = std::env::var("TEST_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .map_or("off".to_owned(), |v| match v.as_str() {
            "error" | "warn" | "info" | "debug" | "trace" => v,
            _ => "info".to_owned(),
        });
    [
        ("DATABASE_URL", db_url),
        ("BIND", "127.0.0.1:0"),
        ("WORKERS", "4"),
        ("LOG_LEVEL", log_level.as_str()),
        // Opening a pooled connection (a SCRAM handshake) can take most of a second in a
        // debug build on a busy machine; tests of the pool timeout set their own.
        ("DB_POOL_TIMEOUT_MS", "5000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The certificate and key files every app serves with under `TEST_HTTPS=1`, made once
/// per test binary; the client trusts the certificate.
static HTTPS_FILES: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

fn https_files() -> (String, String) {
    HTTPS_FILES
        .get_or_init(|| {
            let c = rcgen::generate_simple_self_signed(vec!["localhost".into()])
                .expect("make a certificate");
            let dir = std::env::temp_dir().join(format!("user-api-https-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("make a directory");
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            std::fs::write(&cert, c.cert.pem()).expect("write the certificate");
            std::fs::write(&key, c.signing_key.serialize_pem()).expect("write the key");
            let _ = client::HTTPS_TRUST.set(c.cert.der().to_vec());
            (cert.display().to_string(), key.display().to_string())
        })
        .clone()
}

/// With `TEST_LOG` set, the app's log lines go to stderr (at that level, or info).
fn init_test_logger() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let Ok(level) = std::env::var("TEST_LOG") else {
            return;
        };
        let level = level.parse().unwrap_or(log::LevelFilter::Info);
        let _ = user_api::telemetry::init(level, None);
    });
}

fn build_config(vars: &HashMap<String, String>) -> user_api::Config {
    let from = |vars: &HashMap<String, String>| {
        user_api::Config::from_lookup(|name: &str| vars.get(name).cloned())
    };
    match from(vars) {
        Ok(config) => config,
        // LOG_LEVEL=off may not be a level the app knows; `error` is the quietest one.
        Err(_) if vars.get("LOG_LEVEL").is_some_and(|l| l == "off") => {
            let mut vars = vars.clone();
            vars.insert("LOG_LEVEL".into(), "error".into());
            from(&vars).unwrap_or_else(|e| panic!("the test config is rejected: {e:?}"))
        }
        Err(e) => panic!("the test config is rejected: {e:?}"),
    }
}

fn spawn(database: TestDatabase, configure: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
    init_test_logger();
    let mut vars = base_vars(&database.url);
    configure(&mut vars);
    let token = vars.get("API_TOKEN").cloned();
    if std::env::var("TEST_HTTPS").is_ok_and(|v| v == "1") && !vars.contains_key("TLS_CERT_FILE") {
        let (cert, key) = https_files();
        vars.insert("TLS_CERT_FILE".into(), cert);
        vars.insert("TLS_KEY_FILE".into(), key);
    }
    // An app given its own certificate does not answer this client's probes (plain, or
    // trusting the suite's certificate): its tests wait themselves.
    let https = vars.contains_key("TLS_CERT_FILE")
        && vars.get("TLS_CERT_FILE") != HTTPS_FILES.get().map(|f| &f.0);
    let config = build_config(&vars);
    let app =
        user_api::App::build(config).unwrap_or_else(|e| panic!("the app failed to build: {e:?}"));
    let addr = app.local_addr();
    let stopper = app.stopper();
    let thread = std::thread::Builder::new()
        .name("test-app".into())
        .spawn(move || {
            if let Err(e) = app.run_until_stopped() {
                eprintln!("the test app stopped with an error: {e:?}");
            }
        })
        .expect("start the app thread");
    let app = TestApp {
        addr,
        db_url: database.url.clone(),
        db_name: database.name.clone(),
        token,
        stop: Some(Box::new(move || stopper.stop())),
        thread: Some(thread),
        database,
    };
    if https {
        return app;
    }
    // Alive first (a start-up failure shows at once), then ready: the pool opens its
    // connections in the background, and a test starts from a ready app.
    for (path, within) in [("/health/live", 10), ("/health/ready", 30)] {
        let answered = super::poll_until(Duration::from_secs(within), || {
            if app.thread.as_ref().is_some_and(|t| t.is_finished()) {
                panic!("the app stopped before it answered {path}");
            }
            client::send(addr, "GET", path, &[], None)
                .ok()
                .filter(|r| r.status == 200)
        });
        assert!(
            answered.is_some(),
            "{path} did not answer 200 within {within} s"
        );
    }
    app
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                eprintln!("the test app did not stop within 20 s of stop()");
            }
        }
    }
}

impl TestApp {
    /// A new connection to the test database, for arranging and asserting.
    pub fn db(&self) -> postgres::Client {
        self.database.connect()
    }

    /// A new keep-alive connection to the app.
    pub fn connection(&self) -> HttpConnection {
        HttpConnection::open(self.addr).expect("connect to the app")
    }

    /// Sends one request on a new connection, exactly as given (no token added).
    pub fn raw(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        client::send(self.addr, method, target, headers, body)
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
    }

    /// Sends one request on a new connection, with the app's token when it has one and
    /// `headers` carry none.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(auth) = &auth {
            if !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            {
                all.push(("Authorization", auth));
            }
        }
        self.raw(method, target, &all, body)
    }

    /// A JSON request with `Content-Type: application/json`.
    pub fn json(&self, method: &str, target: &str, body: &Value) -> HttpResponse {
        let bytes = serde_json::to_vec(body).expect("serialise the body");
        self.request(
            method,
            target,
            &[("Content-Type", "application/json")],
            Some(&bytes),
        )
    }

    pub fn create_user(&self, body: &Value) -> HttpResponse {
        self.json("POST", "/user", body)
    }

    /// Creates a user and returns it; panics unless the answer is 201.
    pub fn create_user_ok(&self, body: &Value) -> Value {
        let r = self.create_user(body);
        assert_eq!(r.status, 201, "create {body}: {}", r.text());
        r.json()
    }

    /// Creates a user named `first last` with `email`, returning its id.
    pub fn create_named(&self, first: &str, last: &str, email: Option<&str>) -> i64 {
        let user = self.create_user_ok(&serde_json::json!({
            "first_name": first, "last_name": last, "email": email
        }));
        user["id"].as_i64().expect("the id is an integer")
    }

    pub fn get_user(&self, id: impl Display) -> HttpResponse {
        self.request("GET", &format!("/user/{id}"), &[], None)
    }

    /// `GET /users?{query}` (or `GET /users` when `query` is empty).
    pub fn list_users(&self, query: &str) -> HttpResponse {
        let target = if query.is_empty() {
            "/users".to_owned()
        } else {
            format!("/users?{query}")
        };
        self.request("GET", &target, &[], None)
    }

    pub fn put_user(&self, id: impl Display, body: &Value) -> HttpResponse {
        self.json("PUT", &format!("/user/{id}"), body)
    }

    pub fn patch_user(&self, id: impl Display, body: &Value) -> HttpResponse {
        self.json("PATCH", &format!("/user/{id}"), body)
    }

    pub fn delete_user(&self, id: impl Display) -> HttpResponse {
        self.request("DELETE", &format!("/user/{id}"), &[], None)
    }

    pub fn health(&self) -> HttpResponse {
        self.raw("GET", "/health", &[], None)
    }

    pub fn health_live(&self) -> HttpResponse {
        self.raw("GET", "/health/live", &[], None)
    }

    pub fn health_ready(&self) -> HttpResponse {
        self.raw("GET", "/health/ready", &[], None)
    }

    pub fn metrics(&self) -> HttpResponse {
        self.raw("GET", "/metrics", &[], None)
    }

    pub fn openapi(&self) -> HttpResponse {
        self.raw("GET", "/openapi.json", &[], None)
    }
}
