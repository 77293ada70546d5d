//! Configuration: every setting read once from the environment into typed values, with
//! the first bad one reported as `VARIABLE: what is wrong` before anything binds.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use log::LevelFilter;
use tokio_postgres::config::ChannelBinding;

use crate::db::Endpoint;
use crate::db::tls::{Connector, SslMode, TlsSettings, extract};
use crate::http::client_addr::{Cidr, parse_list};
use crate::http::https::Https;
use crate::http::server::ServerConfig;
use crate::keys::{KeySet, KeyStore};
use crate::router::AdminPath;

/// Every variable the service reads, its default and what it does: the source of `--help`
/// and of the table in docs/configuration.md.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    (
        "DATABASE_URL",
        "-",
        "postgres://user:pass@host:port/db; when set, the DB_* below are ignored (the password ones too when the URL has a password)",
    ),
    (
        "DB_HOST",
        "localhost",
        "PostgreSQL host name, IP address, or unix socket directory",
    ),
    ("DB_PORT", "5432", "PostgreSQL port"),
    (
        "DB_NAME",
        "-",
        "database name (required without DATABASE_URL)",
    ),
    (
        "DB_USER",
        "-",
        "database user (required without DATABASE_URL)",
    ),
    (
        "DB_PASSWORD",
        "-",
        "database password (a password inside DATABASE_URL wins)",
    ),
    (
        "DB_PASSWORD_FILE",
        "-",
        "file holding the password (else $CREDENTIALS_DIRECTORY/db_password)",
    ),
    (
        "DB_SSLMODE",
        "prefer",
        "TLS to PostgreSQL: disable, prefer, require, verify-ca or verify-full (libpq's meanings)",
    ),
    (
        "DB_SSLROOTCERT",
        "-",
        "PEM file of the CA(s) to verify the server against (else $CREDENTIALS_DIRECTORY/db_sslrootcert)",
    ),
    (
        "DB_SSLCERT",
        "-",
        "PEM client certificate, for cert authentication (else $CREDENTIALS_DIRECTORY/db_sslcert)",
    ),
    (
        "DB_SSLKEY",
        "-",
        "PEM key of DB_SSLCERT (else $CREDENTIALS_DIRECTORY/db_sslkey)",
    ),
    (
        "DB_CHANNEL_BINDING",
        "prefer",
        "SCRAM channel binding over TLS: disable, prefer or require",
    ),
    (
        "DATABASE_READ_URL",
        "-",
        "a streaming replica for GET requests (falls back to the primary when it is down)",
    ),
    (
        "DB_READ_HOST",
        "-",
        "or: the replica's host, with the primary's database, user and password",
    ),
    (
        "DB_READ_PORT",
        "DB_PORT",
        "the replica's port, with DB_READ_HOST",
    ),
    ("DB_POOL_SIZE", "WORKERS", "pooled PostgreSQL connections"),
    (
        "DB_STATEMENT_CACHE",
        "on",
        "on: each connection prepares a statement once and reuses it; off: unnamed \
         statements, for PgBouncer in transaction mode before 1.21",
    ),
    (
        "DB_POOL_TIMEOUT_MS",
        "1000",
        "how long a request waits for a pooled connection before a 503",
    ),
    (
        "DB_CONNECT_TIMEOUT",
        "30",
        "seconds to keep retrying the database at start-up",
    ),
    (
        "DB_STATEMENT_TIMEOUT_MS",
        "5000",
        "server-side limit on one statement (0: none, and no start-up option is sent)",
    ),
    (
        "DB_QUERY_TIMEOUT_MS",
        "statement timeout + 500, or 5500",
        "client-side limit on each exchange with the database, handshake included; \
         past it the connection is dropped and the request gets a 503",
    ),
    (
        "BIND",
        "0.0.0.0:5000",
        "address and port to listen on (ignored under socket activation)",
    ),
    (
        "WORKERS",
        "16",
        "threads running requests (each holds a connection only while it queries)",
    ),
    (
        "MAX_BODY_BYTES",
        "65536",
        "largest request body; larger ones get 413 unread",
    ),
    (
        "BODY_BUDGET_BYTES",
        "8388608",
        "request body bytes all connections together may hold; past it a request with a body gets 503",
    ),
    (
        "MAX_DISCARD_BYTES",
        "1048576",
        "a larger declared body is still read (and thrown away) up to this size, so its 413 \
         reaches the client or proxy instead of a reset",
    ),
    (
        "MAX_LIST_OFFSET",
        "10000",
        "deepest offset GET /users accepts (400 past it: page with after_id instead)",
    ),
    (
        "MAX_CONNECTIONS",
        "10000",
        "open client connections at most; at the cap a new one replaces the longest idle one, else gets a fast 503",
    ),
    (
        "MAX_CONNECTIONS_PER_PEER",
        "MAX_CONNECTIONS / 2",
        "open connections from one address at most (0: no cap; TRUSTED_PROXIES are exempt); \
         more get a fast 503",
    ),
    (
        "QUEUE_DEPTH",
        "1024",
        "complete requests waiting for a worker at most; more get 503",
    ),
    (
        "HEADER_TIMEOUT_MS",
        "10000",
        "time to send a complete request head (408 after)",
    ),
    (
        "BODY_TIMEOUT_MS",
        "30000",
        "time to send the body once the head is in (408 after)",
    ),
    (
        "KEEPALIVE_TIMEOUT_MS",
        "60000",
        "how long an idle keep-alive connection is kept",
    ),
    (
        "WRITE_TIMEOUT_MS",
        "10000",
        "how long writing one response may take",
    ),
    (
        "MAX_HEADER_BYTES",
        "16384",
        "largest request head (431 past it)",
    ),
    (
        "MAX_HEADERS",
        "64",
        "most header fields in a request (431 past it)",
    ),
    (
        "SHUTDOWN_TIMEOUT",
        "10",
        "seconds a graceful stop waits for requests in flight",
    ),
    (
        "TLS_CERT_FILE",
        "-",
        "PEM certificate chain, leaf first: serve HTTPS instead of HTTP, re-read on SIGHUP (else $CREDENTIALS_DIRECTORY/tls_cert); see docs/tls.md",
    ),
    (
        "TLS_KEY_FILE",
        "-",
        "PEM private key of TLS_CERT_FILE (else $CREDENTIALS_DIRECTORY/tls_key)",
    ),
    (
        "API_KEYS_FILE",
        "-",
        "API keys file, re-read on SIGHUP (else $CREDENTIALS_DIRECTORY/api_keys); see docs/api-keys.md",
    ),
    (
        "API_TOKEN",
        "-",
        "or: one key with every scope; /user and /users need Authorization: Bearer <token>",
    ),
    (
        "API_TOKEN_FILE",
        "-",
        "file holding the token (else $CREDENTIALS_DIRECTORY/api_token)",
    ),
    (
        "REQUIRE_IF_MATCH",
        "false",
        "when true, PUT, PATCH and DELETE of a user need If-Match (428 without it)",
    ),
    (
        "IDEMPOTENCY_KEY_TTL_SECS",
        "86400",
        "how long a stored Idempotency-Key answer is replayed before the key expires",
    ),
    (
        "RATE_LIMIT_PER_SEC",
        "0",
        "requests per second per client address (0: no limit); past it, 429",
    ),
    (
        "RATE_LIMIT_BURST",
        "2 x RATE_LIMIT_PER_SEC",
        "requests a client may make at once before the rate applies",
    ),
    (
        "TRUSTED_PROXIES",
        "-",
        "addresses/CIDRs whose X-Forwarded-For names the client (e.g. 10.0.0.0/8)",
    ),
    (
        "LOG_LEVEL",
        "info",
        "off, error, warn, info, debug or trace",
    ),
    ("LOG_FILE", "-", "also append the log to this file"),
    (
        "ADMIN_PATH",
        "/admin",
        "where the browser admin console is served (`off`: not at all); see docs/admin.md",
    ),
    (
        "SERVED_BY",
        "-",
        "send X-Served-By: this value on every response (`hostname`: the host name)",
    ),
];

/// A bad setting: which variable, and what is wrong with it. Never holds a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.msg)
    }
}

impl std::error::Error for ConfigError {}

fn err(var: &'static str, msg: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        msg: msg.into(),
    }
}

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Whether a session prepares each statement once and reuses it (`DB_STATEMENT_CACHE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementCache {
    /// Named statements, prepared on first use and kept for the connection's life.
    On,
    /// Every statement unnamed, parsed and planned each time, in one round trip: what
    /// PgBouncer in transaction mode before 1.21 needs, since a later transaction may
    /// run on a server connection that never saw the statement.
    Off,
}

/// Where and how to reach PostgreSQL.
#[derive(Clone, Debug)]
pub struct DbConfig {
    pub primary: Endpoint,
    /// A streaming replica for reads, when one is configured.
    pub replica: Option<Endpoint>,
    pub pool_size: u32,
    pub pool_timeout: Duration,
    pub connect_timeout: Duration,
    /// How long we wait for any answer from the database before giving up on the
    /// connection: what bounds a request when the database hangs.
    pub query_timeout: Duration,
    pub statement_cache: StatementCache,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub db: DbConfig,
    pub bind: SocketAddr,
    pub server: ServerConfig,
    /// The API keys in force (`API_KEYS_FILE`, or `API_TOKEN` as one key); `None`: the
    /// user routes are open. Shared: the store a clone holds is the one SIGHUP reloads.
    pub api_keys: Option<Arc<KeyStore>>,
    /// The certificate the listener serves HTTPS with; `None`: plain HTTP.
    pub https: Option<Arc<Https>>,
    /// Worth a warning once the logger is up (a world-readable keys file).
    pub warnings: Vec<String>,
    pub log_level: LevelFilter,
    pub log_file: Option<PathBuf>,
    pub served_by: Option<String>,
    /// Requests per second and burst per client address, when limited.
    pub rate_limit: Option<(f64, f64)>,
    pub trusted_proxies: Vec<Cidr>,
    /// Where the admin console is served; `None` when it is off.
    pub admin_path: Option<AdminPath>,
    /// PUT, PATCH and DELETE of a user need `If-Match` (428 without it).
    pub require_if_match: bool,
    /// How long an `Idempotency-Key`'s stored answer is replayed.
    pub idempotency_key_ttl: Duration,
    /// The deepest `offset` a listing accepts.
    pub max_list_offset: i64,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the environment. An empty
    /// value counts as unset, as compose files and env files write them.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env(Box::new(move |name: &str| {
            lookup(name).filter(|v| !v.is_empty())
        }));
        let workers = env.parse_in("WORKERS", 16, 1..=1024)?;
        let trusted_proxies = match env.get("TRUSTED_PROXIES") {
            Some(list) => parse_list(&list).map_err(|e| err("TRUSTED_PROXIES", e))?,
            None => Vec::new(),
        };
        let max_connections = env.parse_in("MAX_CONNECTIONS", 10_000, 1..=1_000_000)?;
        let server = ServerConfig {
            workers,
            max_body_bytes: env.parse_in("MAX_BODY_BYTES", 65_536, 0..=64 << 20)?,
            max_discard_bytes: env.parse_in("MAX_DISCARD_BYTES", 1 << 20, 0..=1 << 30)?,
            body_budget_bytes: env.parse_in("BODY_BUDGET_BYTES", 8 << 20, 0..=1 << 30)?,
            max_connections,
            max_connections_per_peer: env.parse_in(
                "MAX_CONNECTIONS_PER_PEER",
                (max_connections / 2).max(1),
                0..=1_000_000,
            )?,
            uncapped_peers: trusted_proxies.clone(),
            queue_depth: env.parse_in("QUEUE_DEPTH", 1024, 1..=1_000_000)?,
            header_timeout: env.millis("HEADER_TIMEOUT_MS", 10_000)?,
            body_timeout: env.millis("BODY_TIMEOUT_MS", 30_000)?,
            keepalive_timeout: env.millis("KEEPALIVE_TIMEOUT_MS", 60_000)?,
            write_timeout: env.millis("WRITE_TIMEOUT_MS", 10_000)?,
            max_header_bytes: env.parse_in("MAX_HEADER_BYTES", 16_384, 1024..=1 << 20)?,
            max_headers: env.parse_in("MAX_HEADERS", 64, 8..=1024)?,
            shutdown_timeout: Duration::from_secs(env.parse_in(
                "SHUTDOWN_TIMEOUT",
                10,
                0..=3600,
            )?),
        };
        let db = db_config(&env, workers)?;
        let bind = env.parse_as(
            "BIND",
            "0.0.0.0:5000".parse().expect("valid default"),
            "host:port with a literal IP address, e.g. 127.0.0.1:5000 or [::]:5000",
        )?;
        let (api_keys, warnings) = api_keys(&env)?;
        let https = https(&env)?;
        Ok(Config {
            db,
            bind,
            server,
            api_keys,
            https,
            warnings,
            log_level: log_level(env.get("LOG_LEVEL").as_deref().unwrap_or("info"))?,
            log_file: env.get("LOG_FILE").map(PathBuf::from),
            served_by: served_by(env.get("SERVED_BY")),
            rate_limit: rate_limit(&env)?,
            trusted_proxies,
            max_list_offset: env.parse_in(
                "MAX_LIST_OFFSET",
                crate::domain::DEFAULT_MAX_OFFSET,
                0..=i64::MAX,
            )?,
            admin_path: admin_path(env.get("ADMIN_PATH"))?,
            require_if_match: env.parse("REQUIRE_IF_MATCH", false)?,
            idempotency_key_ttl: Duration::from_secs(env.parse_in(
                "IDEMPOTENCY_KEY_TTL_SECS",
                86_400,
                1..=30 * 86_400,
            )?),
        })
    }
}

fn db_config(env: &Env<'_>, workers: usize) -> Result<DbConfig, ConfigError> {
    let (mut pg, tls) = match env.get("DATABASE_URL") {
        Some(url) => parse_url(env, "DATABASE_URL", &url)?,
        None => {
            let mut pg = tokio_postgres::Config::new();
            let host = env.get("DB_HOST").unwrap_or_else(|| "localhost".into());
            pg.host(&host)
                .port(env.parse_in("DB_PORT", 5432, 1..=65535)?)
                .dbname(&env.require("DB_NAME")?)
                .user(&env.require("DB_USER")?);
            let tls = tls_settings(env, None)?;
            (pg, tls)
        }
    };
    // A password written into DATABASE_URL wins: it came with the user and host it belongs
    // to, while a DB_PASSWORD may come from elsewhere, e.g. a .env copied from .env.example
    // under scripts/dev, which sets DATABASE_URL with its own password.
    if pg.get_password().is_none() {
        if let Some(password) = env.secret("DB_PASSWORD", "DB_PASSWORD_FILE", "db_password")? {
            pg.password(password.expose());
        }
    }
    let statement_timeout: u64 = env.parse_in("DB_STATEMENT_TIMEOUT_MS", 5000, 0..=86_400_000)?;
    let channel_binding = channel_binding(env)?;
    tune(&mut pg, statement_timeout, channel_binding);
    let var = if env.get("DATABASE_URL").is_some() {
        "DATABASE_URL"
    } else {
        "DB_SSLMODE"
    };
    let replica = read_config(env, &pg, &tls, statement_timeout, channel_binding)?;
    let default_pool = u32::try_from(workers).unwrap_or(u32::MAX);
    Ok(DbConfig {
        primary: endpoint(var, pg, &tls)?,
        replica,
        pool_size: env.parse_in("DB_POOL_SIZE", default_pool, 1..=1024)?,
        pool_timeout: Duration::from_millis(env.parse_in(
            "DB_POOL_TIMEOUT_MS",
            1000,
            1..=600_000,
        )?),
        connect_timeout: Duration::from_secs(env.parse_in("DB_CONNECT_TIMEOUT", 30, 0..=86_400)?),
        query_timeout: Duration::from_millis(env.parse_in(
            "DB_QUERY_TIMEOUT_MS",
            query_timeout_default(statement_timeout),
            1..=86_400_000,
        )?),
        statement_cache: statement_cache(env.get("DB_STATEMENT_CACHE").as_deref())?,
    })
}

/// A connection URL (or libpq key=value string) and its TLS settings: the parameters
/// it names itself, the `DB_SSL*` variables for the rest.
fn parse_url(
    env: &Env<'_>,
    var: &'static str,
    url: &str,
) -> Result<(tokio_postgres::Config, TlsSettings), ConfigError> {
    let extracted = extract(url);
    let pg = tokio_postgres::Config::from_str(&extracted.rest).map_err(|e| {
        // The parser's message may quote the URL, password included: say less, but
        // name an unknown or bad parameter (its own text never holds a value).
        let why = e.to_string();
        let detail = why
            .strip_prefix("invalid configuration: ")
            .filter(|d| {
                d.starts_with("unknown option") || d.starts_with("invalid value for option")
            })
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        err(
            var,
            format!("not a valid postgres:// URL or key=value string{detail}"),
        )
    })?;
    let tls = tls_settings(env, Some((var, &extracted)))?;
    Ok((pg, tls))
}

/// The TLS settings: what `from_url` names, else the `DB_SSL*` variables, else (for the
/// files) the systemd credentials `db_sslrootcert`, `db_sslcert`, `db_sslkey`.
fn tls_settings(
    env: &Env<'_>,
    from_url: Option<(&'static str, &crate::db::tls::Extracted)>,
) -> Result<TlsSettings, ConfigError> {
    let pick = |url_value: Option<&String>, var: &'static str| -> (Option<String>, &'static str) {
        match (url_value, from_url) {
            (Some(v), Some((url_var, _))) => (Some(v.clone()), url_var),
            _ => (env.get(var), var),
        }
    };
    let url = from_url.map(|(_, e)| e);
    let (mode, mode_var) = pick(url.and_then(|e| e.mode.as_ref()), "DB_SSLMODE");
    let mode = match mode {
        Some(m) => SslMode::parse(m.trim()).map_err(|e| err(mode_var, format!("sslmode {e}")))?,
        None => SslMode::Prefer,
    };
    let file = |url_value: Option<&String>, var: &'static str, credential: &str| {
        pick(url_value, var).0.map(PathBuf::from).or_else(|| {
            let path = PathBuf::from(env.get("CREDENTIALS_DIRECTORY")?).join(credential);
            path.exists().then_some(path)
        })
    };
    Ok(TlsSettings {
        mode,
        root_cert: file(
            url.and_then(|e| e.root_cert.as_ref()),
            "DB_SSLROOTCERT",
            "db_sslrootcert",
        ),
        client_cert: file(
            url.and_then(|e| e.client_cert.as_ref()),
            "DB_SSLCERT",
            "db_sslcert",
        ),
        client_key: file(
            url.and_then(|e| e.client_key.as_ref()),
            "DB_SSLKEY",
            "db_sslkey",
        ),
    })
}

fn channel_binding(env: &Env<'_>) -> Result<Option<ChannelBinding>, ConfigError> {
    Ok(
        match env.get("DB_CHANNEL_BINDING").as_deref().map(str::trim) {
            None => None,
            Some("disable") => Some(ChannelBinding::Disable),
            Some("prefer") => Some(ChannelBinding::Prefer),
            Some("require") => Some(ChannelBinding::Require),
            Some(other) => {
                return Err(err(
                    "DB_CHANNEL_BINDING",
                    format!("{other:?} is not one of disable, prefer, require"),
                ));
            }
        },
    )
}

/// Connection settings and the TLS connector built from `tls` (files read now, so a
/// bad one stops start-up).
fn endpoint(
    var: &'static str,
    mut pg: tokio_postgres::Config,
    tls: &TlsSettings,
) -> Result<Endpoint, ConfigError> {
    pg.ssl_mode(tls.mode.driver_mode());
    let connector = Connector::new(tls).map_err(|e| err(var, e))?;
    Ok(Endpoint { pg, tls: connector })
}

fn statement_cache(value: Option<&str>) -> Result<StatementCache, ConfigError> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("on" | "true" | "1") => Ok(StatementCache::On),
        Some("off" | "false" | "0") => Ok(StatementCache::Off),
        Some(v) => Err(err(
            "DB_STATEMENT_CACHE",
            format!("{v:?} is not one of on, off"),
        )),
    }
}

/// The server gets the first word: half a second past its own statement timeout, so a
/// slow statement ends with its (clearer) error, and ours only when nothing answers.
fn query_timeout_default(statement_timeout_ms: u64) -> u64 {
    match statement_timeout_ms {
        0 => 5_500,
        ms => ms.saturating_add(500),
    }
}

/// Settings every connection gets, to the primary and to a replica alike.
fn tune(
    pg: &mut tokio_postgres::Config,
    statement_timeout_ms: u64,
    channel_binding: Option<ChannelBinding>,
) {
    // A literal IP skips the resolver thread tokio-postgres starts for every new
    // connection to a host name.
    let ips: Vec<_> = pg
        .get_hosts()
        .iter()
        .filter_map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.parse::<std::net::IpAddr>().ok(),
            _ => None,
        })
        .collect();
    if ips.len() == pg.get_hosts().len() && pg.get_hostaddrs().is_empty() {
        for ip in ips {
            pg.hostaddr(ip);
        }
    }
    pg.application_name("user-api")
        .connect_timeout(Duration::from_secs(5))
        // Bounds how long a write may go unacknowledged when the network to the
        // database is cut, so such a request fails instead of hanging.
        .tcp_user_timeout(Duration::from_secs(10))
        .keepalives_idle(Duration::from_secs(30));
    // The URL's own `channel_binding` stands unless the variable says otherwise.
    if let Some(cb) = channel_binding {
        pg.channel_binding(cb);
    }
    // Sent as start-up options, which PgBouncer refuses unless told to ignore them: with
    // 0 nothing is sent, and a pooler can set the limit itself (`connect_query`).
    // client_min_messages: NOTICEs are never news for this service (the migrations'
    // "relation ... already exists, skipping" at every start); warnings still come.
    if statement_timeout_ms > 0 {
        pg.options(format!(
            "-c statement_timeout={statement_timeout_ms} -c client_min_messages=warning"
        ));
    }
}

/// The replica: `DATABASE_READ_URL`, or the primary's database, user, password and TLS
/// settings at `DB_READ_HOST` (and `DB_READ_PORT`).
fn read_config(
    env: &Env<'_>,
    primary: &tokio_postgres::Config,
    primary_tls: &TlsSettings,
    statement_timeout_ms: u64,
    channel_binding: Option<ChannelBinding>,
) -> Result<Option<Endpoint>, ConfigError> {
    let (mut pg, tls, var) = if let Some(url) = env.get("DATABASE_READ_URL") {
        let (pg, tls) = parse_url(env, "DATABASE_READ_URL", &url)?;
        (pg, tls, "DATABASE_READ_URL")
    } else if let Some(host) = env.get("DB_READ_HOST") {
        let port = *primary.get_ports().first().unwrap_or(&5432);
        let mut pg = tokio_postgres::Config::new();
        pg.host(&host)
            .port(env.parse_in("DB_READ_PORT", port, 1..=65535)?);
        if let Some(db) = primary.get_dbname() {
            pg.dbname(db);
        }
        if let Some(user) = primary.get_user() {
            pg.user(user);
        }
        (pg, primary_tls.clone(), "DB_READ_HOST")
    } else {
        return Ok(None);
    };
    if pg.get_password().is_none() {
        if let Some(pw) = primary.get_password() {
            pg.password(pw);
        }
    }
    tune(&mut pg, statement_timeout_ms, channel_binding);
    endpoint(var, pg, &tls).map(Some)
}

/// `API_KEYS_FILE` (or the `api_keys` credential), else `API_TOKEN*` as one key, else
/// none; a keys file and a token at once is refused rather than one silently winning.
fn api_keys(env: &Env<'_>) -> Result<(Option<Arc<KeyStore>>, Vec<String>), ConfigError> {
    let token = env.secret("API_TOKEN", "API_TOKEN_FILE", "api_token")?;
    let file = env.get("API_KEYS_FILE").or_else(|| {
        let dir = env.get("CREDENTIALS_DIRECTORY")?;
        let path = format!("{dir}/api_keys");
        std::path::Path::new(&path).exists().then_some(path)
    });
    match (file, token) {
        (Some(_), Some(_)) => Err(err(
            "API_KEYS_FILE",
            "set either API_KEYS_FILE or API_TOKEN/API_TOKEN_FILE, not both \
             (the token can become a line of the keys file: see docs/api-keys.md)",
        )),
        (Some(path), None) => {
            let (store, warnings) =
                KeyStore::open(path.as_ref()).map_err(|e| err("API_KEYS_FILE", e.to_string()))?;
            Ok((Some(Arc::new(store)), warnings))
        }
        (None, Some(token)) => Ok((
            Some(Arc::new(KeyStore::fixed(KeySet::from_token(
                token.expose(),
            )))),
            Vec::new(),
        )),
        (None, None) => Ok((None, Vec::new())),
    }
}

/// `TLS_CERT_FILE` and `TLS_KEY_FILE`, else the systemd credentials `tls_cert` and
/// `tls_key` when both exist; one without the other is refused.
fn https(env: &Env<'_>) -> Result<Option<Arc<Https>>, ConfigError> {
    let (cert, key) = match (env.get("TLS_CERT_FILE"), env.get("TLS_KEY_FILE")) {
        (Some(c), Some(k)) => (PathBuf::from(c), PathBuf::from(k)),
        (Some(_), None) => {
            return Err(err(
                "TLS_KEY_FILE",
                "TLS_CERT_FILE is set but TLS_KEY_FILE is not",
            ));
        }
        (None, Some(_)) => {
            return Err(err(
                "TLS_CERT_FILE",
                "TLS_KEY_FILE is set but TLS_CERT_FILE is not",
            ));
        }
        (None, None) => {
            let Some(dir) = env.get("CREDENTIALS_DIRECTORY") else {
                return Ok(None);
            };
            let (cert, key) = (
                PathBuf::from(&dir).join("tls_cert"),
                PathBuf::from(&dir).join("tls_key"),
            );
            if !(cert.exists() && key.exists()) {
                return Ok(None);
            }
            (cert, key)
        }
    };
    Https::open(&cert, &key)
        .map(|h| Some(Arc::new(h)))
        .map_err(|e| err(e.var, e.msg))
}

fn rate_limit(env: &Env<'_>) -> Result<Option<(f64, f64)>, ConfigError> {
    let per_sec: f64 = env.parse_in("RATE_LIMIT_PER_SEC", 0.0, 0.0..=1e9)?;
    if per_sec == 0.0 {
        return Ok(None);
    }
    let burst = env.parse_in("RATE_LIMIT_BURST", (per_sec * 2.0).max(1.0), 1.0..=1e9)?;
    Ok(Some((per_sec, burst)))
}

/// Unset means the default `/admin`; `off` turns the console off (an empty value counts
/// as unset here as everywhere, so it cannot be the way to turn it off).
fn admin_path(value: Option<String>) -> Result<Option<AdminPath>, ConfigError> {
    match value.as_deref().map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("off") => Ok(None),
        v => AdminPath::parse(v.unwrap_or("/admin"))
            .map(Some)
            .map_err(|e| err("ADMIN_PATH", e)),
    }
}

fn log_level(s: &str) -> Result<LevelFilter, ConfigError> {
    match s.to_ascii_lowercase().as_str() {
        "off" => Ok(LevelFilter::Off),
        "error" => Ok(LevelFilter::Error),
        "warn" => Ok(LevelFilter::Warn),
        "info" => Ok(LevelFilter::Info),
        "debug" => Ok(LevelFilter::Debug),
        "trace" => Ok(LevelFilter::Trace),
        _ => Err(err(
            "LOG_LEVEL",
            format!("{s:?} is not one of off, error, warn, info, debug, trace"),
        )),
    }
}

fn served_by(value: Option<String>) -> Option<String> {
    let v = value?;
    let v = if v == "hostname" {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .ok()?
    } else {
        v
    };
    // The value goes into a header: keep it to visible ASCII.
    let v: String = v.trim().chars().filter(|c| c.is_ascii_graphic()).collect();
    (!v.is_empty()).then_some(v)
}

type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

struct Env<'a>(Lookup<'a>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }

    fn require(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name)
            .ok_or_else(|| err(name, "not set (set it, or set DATABASE_URL)"))
    }

    fn parse<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| err(name, format!("{v:?} is not a valid value"))),
        }
    }

    /// As `parse`, with the error saying what is `expected` instead.
    fn parse_as<T: FromStr>(
        &self,
        name: &'static str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        self.parse(name, default).map_err(|_| {
            let v = self.get(name).unwrap_or_default();
            err(name, format!("{v:?} is not valid: expected {expected}"))
        })
    }

    fn parse_in<T>(
        &self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let v = self.parse(name, default)?;
        if range.contains(&v) {
            Ok(v)
        } else {
            Err(err(
                name,
                format!("{v} is out of range ({} to {})", range.start(), range.end()),
            ))
        }
    }

    fn millis(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(self.parse_in(
            name,
            default,
            1..=86_400_000,
        )?))
    }

    /// A secret from `var`, or the file named by `file_var`, or the systemd credential
    /// `credential`; both `var` and `file_var` at once is an error.
    fn secret(
        &self,
        var: &'static str,
        file_var: &'static str,
        credential: &str,
    ) -> Result<Option<Secret>, ConfigError> {
        match (self.get(var), self.get(file_var)) {
            (Some(_), Some(_)) => Err(err(
                var,
                format!("set either {var} or {file_var}, not both"),
            )),
            (Some(v), None) => Ok(Some(Secret(v))),
            (None, Some(path)) => read_secret(&path).map(Some).map_err(|e| err(file_var, e)),
            (None, None) => match self.get("CREDENTIALS_DIRECTORY") {
                Some(dir) => {
                    let path = format!("{dir}/{credential}");
                    if std::path::Path::new(&path).exists() {
                        read_secret(&path).map(Some).map_err(|e| err(file_var, e))
                    } else {
                        Ok(None)
                    }
                }
                None => Ok(None),
            },
        }
    }
}

fn read_secret(path: &str) -> Result<Secret, String> {
    let raw = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let value = raw.strip_suffix('\n').unwrap_or(&raw);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(format!("{path} is empty"));
    }
    Ok(Secret(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |k| map.get(k).cloned())
    }

    const BASE: &[(&str, &str)] = &[("DB_NAME", "app"), ("DB_USER", "app")];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        BASE.iter().chain(extra).copied().collect()
    }

    #[test]
    fn config_has_documented_defaults_when_only_required_vars_are_set() {
        let c = config(BASE).unwrap();
        assert_eq!(c.bind.to_string(), "0.0.0.0:5000");
        assert_eq!(c.server.workers, 16);
        assert_eq!(c.db.pool_size, 16);
        assert_eq!(c.db.pool_timeout, Duration::from_millis(1000));
        assert_eq!(c.db.connect_timeout, Duration::from_secs(30));
        assert_eq!(c.server.max_body_bytes, 65_536);
        assert_eq!(c.log_level, LevelFilter::Info);
        assert_eq!(c.db.primary.pg.get_ports(), &[5432]);
        assert_eq!(c.db.primary.pg.get_application_name(), Some("user-api"));
        assert!(c.api_keys.is_none());
        assert!(c.rate_limit.is_none());
        assert_eq!(c.admin_path.as_ref().map(AdminPath::as_str), Some("/admin"));
        let c = config(&with(&[("RATE_LIMIT_PER_SEC", "5")])).unwrap();
        assert_eq!(c.rate_limit, Some((5.0, 10.0)));
    }

    #[test]
    fn query_timeout_follows_the_statement_timeout_unless_set() {
        let ms = |vars: &[(&'static str, &'static str)]| {
            config(&with(vars)).unwrap().db.query_timeout.as_millis()
        };
        assert_eq!(ms(&[]), 5_500);
        assert_eq!(ms(&[("DB_STATEMENT_TIMEOUT_MS", "1000")]), 1_500);
        assert_eq!(ms(&[("DB_STATEMENT_TIMEOUT_MS", "0")]), 5_500);
        let set = [
            ("DB_STATEMENT_TIMEOUT_MS", "1000"),
            ("DB_QUERY_TIMEOUT_MS", "250"),
        ];
        assert_eq!(ms(&set), 250);
        let e = config(&with(&[("DB_QUERY_TIMEOUT_MS", "0")])).unwrap_err();
        assert!(e.to_string().starts_with("DB_QUERY_TIMEOUT_MS: "), "{e}");
    }

    #[test]
    fn statements_are_cached_unless_the_cache_is_turned_off() {
        let cache =
            |vars: &[(&'static str, &'static str)]| config(&with(vars)).unwrap().db.statement_cache;
        assert_eq!(cache(&[]), StatementCache::On);
        assert_eq!(cache(&[("DB_STATEMENT_CACHE", "on")]), StatementCache::On);
        assert_eq!(cache(&[("DB_STATEMENT_CACHE", "off")]), StatementCache::Off);
        assert_eq!(cache(&[("DB_STATEMENT_CACHE", "OFF")]), StatementCache::Off);
    }

    #[test]
    fn config_fails_naming_the_variable_when_a_value_is_bad() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("DB_PORT", "abc")], "DB_PORT"),
            (&[("DB_PORT", "70000")], "DB_PORT"),
            (&[("WORKERS", "0")], "WORKERS"),
            (&[("BIND", "nowhere")], "BIND"),
            (&[("LOG_LEVEL", "loud")], "LOG_LEVEL"),
            (&[("DB_POOL_TIMEOUT_MS", "-5")], "DB_POOL_TIMEOUT_MS"),
            (&[("DB_STATEMENT_CACHE", "sometimes")], "DB_STATEMENT_CACHE"),
            (
                &[("DB_PASSWORD_FILE", "/nonexistent/pw")],
                "DB_PASSWORD_FILE",
            ),
            (
                &[("DB_PASSWORD", "a"), ("DB_PASSWORD_FILE", "/x")],
                "DB_PASSWORD",
            ),
            (&[("API_TOKEN", "a"), ("API_TOKEN_FILE", "/x")], "API_TOKEN"),
            (&[("RATE_LIMIT_PER_SEC", "fast")], "RATE_LIMIT_PER_SEC"),
            (
                &[("RATE_LIMIT_PER_SEC", "5"), ("RATE_LIMIT_BURST", "0")],
                "RATE_LIMIT_BURST",
            ),
            (&[("TRUSTED_PROXIES", "10.0.0.0/99")], "TRUSTED_PROXIES"),
            (&[("ADMIN_PATH", "admin")], "ADMIN_PATH"),
            (&[("ADMIN_PATH", "/users/admin")], "ADMIN_PATH"),
        ];
        for (extra, var) in cases {
            let e = config(&with(extra)).unwrap_err();
            assert_eq!(e.var, *var, "{extra:?}");
        }
        assert_eq!(config(&[("DB_USER", "u")]).unwrap_err().var, "DB_NAME");
    }

    #[test]
    fn config_errors_never_echo_secrets() {
        let e = config(&with(&[
            ("DB_PASSWORD", "hunter2"),
            ("DB_PASSWORD_FILE", "/x"),
        ]))
        .unwrap_err();
        assert!(!e.to_string().contains("hunter2"));
        let e = config(&[("DATABASE_URL", "postgres://u:hunter2@h:bad/db")]).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let c = config(&with(&[("DB_PASSWORD", "hunter2"), ("API_TOKEN", "tok3n")])).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("tok3n"), "{dbg}");
    }

    #[test]
    fn https_comes_from_the_tls_credentials_only_when_both_are_there() {
        let dir = std::env::temp_dir().join(format!("user-api-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.join("tls_cert"), c.cert.pem()).unwrap();
        let dir_s = dir.to_str().unwrap().to_owned();
        let build = || {
            let dir_s = dir_s.clone();
            Config::from_lookup(move |k| match k {
                "DB_NAME" | "DB_USER" => Some("app".into()),
                "CREDENTIALS_DIRECTORY" => Some(dir_s.clone()),
                _ => None,
            })
            .unwrap()
        };
        assert!(build().https.is_none(), "tls_cert alone turned HTTPS on");
        std::fs::write(dir.join("tls_key"), c.signing_key.serialize_pem()).unwrap();
        let https = build().https.expect("both credentials turn HTTPS on");
        assert_eq!(https.cert_file(), dir.join("tls_cert"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn config_reads_secrets_from_files_without_the_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("user-api-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        std::fs::write(dir.join("api_token"), "tok\r\n").unwrap();
        let pw = pw.to_str().unwrap().to_owned();
        let dir_s = dir.to_str().unwrap().to_owned();
        let c = Config::from_lookup(move |k| match k {
            "DB_NAME" | "DB_USER" => Some("app".into()),
            "DB_PASSWORD_FILE" => Some(pw.clone()),
            "CREDENTIALS_DIRECTORY" => Some(dir_s.clone()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.db.primary.pg.get_password(), Some(&b"s3cret"[..]));
        let keys = c.api_keys.unwrap().current();
        assert_eq!(keys.find("tok").map(|k| k.name()), Some("api-token"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn config_reads_api_keys_file_and_refuses_it_beside_a_token() {
        let dir = std::env::temp_dir().join(format!("user-api-keys-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("keys");
        let hash = crate::keys::secret::format_hash(&crate::keys::secret::digest("s"));
        std::fs::write(&good, format!("dash read {hash}\n")).unwrap();
        let bad = dir.join("bad");
        std::fs::write(&bad, "dash admin sha256:00\nx read sha256:00\n").unwrap();
        let (good, bad) = (good.display().to_string(), bad.display().to_string());
        let with = |extra: &[(&'static str, &str)]| -> Vec<(&str, String)> {
            BASE.iter()
                .chain(extra)
                .map(|(k, v)| (*k, v.to_string()))
                .collect()
        };
        let config = |vars: Vec<(&str, String)>| {
            let map: HashMap<String, String> =
                vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            Config::from_lookup(move |k| map.get(k).cloned())
        };
        let c = config(with(&[("API_KEYS_FILE", &good)])).unwrap();
        let keys = c.api_keys.unwrap().current();
        assert_eq!(keys.find("s").map(|k| k.name()), Some("dash"));
        let e = config(with(&[("API_KEYS_FILE", &bad)])).unwrap_err();
        assert_eq!(e.var, "API_KEYS_FILE");
        assert!(e.msg.contains(":1: unknown scope"), "{e}");
        assert!(e.msg.contains("and 1 more"), "{e}");
        for token in [("API_TOKEN", "t"), ("API_TOKEN_FILE", good.as_str())] {
            let e = config(with(&[("API_KEYS_FILE", &good), token])).unwrap_err();
            assert_eq!(e.var, "API_KEYS_FILE", "{token:?}");
            assert!(e.msg.contains("not both"), "{e}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn config_takes_database_url_and_treats_empty_values_as_unset() {
        let c = config(&[
            ("DATABASE_URL", "postgres://u:p@127.0.0.1:6543/d"),
            ("API_TOKEN", ""),
            ("WORKERS", "3"),
        ])
        .unwrap();
        assert_eq!(c.db.primary.pg.get_ports(), &[6543]);
        assert_eq!(c.db.primary.pg.get_dbname(), Some("d"));
        assert_eq!(c.db.pool_size, 3);
        assert!(c.api_keys.is_none());
        assert_eq!(c.db.primary.pg.get_hostaddrs().len(), 1);
    }

    #[test]
    fn a_password_inside_database_url_wins_over_db_password() {
        let url = "postgres://u:from-url@127.0.0.1:6543/d";
        let c = config(&[("DATABASE_URL", url), ("DB_PASSWORD", "change-me")]).unwrap();
        assert_eq!(c.db.primary.pg.get_password(), Some(&b"from-url"[..]));
        // and a URL without one takes the separate variable
        let url = "postgres://u@127.0.0.1:6543/d";
        let c = config(&[("DATABASE_URL", url), ("DB_PASSWORD", "sep")]).unwrap();
        assert_eq!(c.db.primary.pg.get_password(), Some(&b"sep"[..]));
    }

    #[test]
    fn a_bad_bind_says_that_host_and_port_are_expected() {
        let e = config(&with(&[("BIND", "nonsense")])).unwrap_err();
        assert_eq!(e.var, "BIND");
        assert!(e.to_string().contains("host:port"), "{e}");
    }

    #[test]
    fn config_reads_a_replica_with_the_primarys_credentials() {
        let c = config(&with(&[
            ("DB_PASSWORD", "pw"),
            ("DB_READ_HOST", "10.0.0.9"),
        ]))
        .unwrap();
        let r = c.db.replica.unwrap().pg;
        assert_eq!(
            r.get_hostaddrs(),
            &["10.0.0.9".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!((r.get_dbname(), r.get_user()), (Some("app"), Some("app")));
        assert_eq!(r.get_password(), Some(&b"pw"[..]));
        assert_eq!(r.get_ports(), &[5432]);
        let c = config(&[
            ("DATABASE_URL", "postgres://u:p@127.0.0.1/d"),
            ("DATABASE_READ_URL", "postgres://u@127.0.0.2:5433/d"),
        ])
        .unwrap();
        let r = c.db.replica.unwrap().pg;
        assert_eq!(
            (r.get_ports(), r.get_password()),
            (&[5433][..], Some(&b"p"[..]))
        );
        assert!(config(BASE).unwrap().db.replica.is_none());
    }

    #[test]
    fn admin_path_is_moved_by_a_path_and_turned_off_by_off() {
        let path = |v: &'static str| config(&with(&[("ADMIN_PATH", v)])).unwrap().admin_path;
        assert_eq!(path("/ops/console").unwrap().as_str(), "/ops/console");
        assert_eq!(path("OFF"), None);
        assert_eq!(path("").unwrap().as_str(), "/admin");
    }

    #[test]
    fn variables_table_lists_each_name_once() {
        let mut names: Vec<_> = VARIABLES.iter().map(|v| v.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), VARIABLES.len());
    }
}

#[cfg(test)]
mod docs_tests {
    use super::VARIABLES;

    #[test]
    fn configuration_doc_and_env_example_document_every_variable() {
        let reference = include_str!("../docs/configuration.md");
        let example = include_str!("../.env.example");
        for (name, _, _) in VARIABLES {
            assert!(
                reference.contains(&format!("| `{name}` |")),
                "docs/configuration.md lacks {name}"
            );
            assert!(example.contains(name), ".env.example lacks {name}");
        }
    }
}
