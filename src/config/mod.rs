//! Configuration: every setting read once from the environment into typed values, with
//! the first bad one reported as `VARIABLE: what is wrong` before anything binds.
//!
//! [`settings`] declares each variable once; [`env`] reads them by those declarations;
//! `database` builds the database layer's settings; this module assembles the rest.

mod database;
#[cfg(test)]
mod docs_tests;
mod env;
pub mod settings;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use log::LevelFilter;

use crate::db::DbConfig;
use crate::http::client_addr::{Cidr, parse_list};
use crate::http::https::Https;
use crate::http::server::ServerConfig;
use crate::keys::{KeySet, KeyStore};
use crate::rate_limit::RateLimit;
use crate::router::AdminPath;
use crate::routes::ROUTES;
use env::Env;
pub use env::Secret;
use settings::{
    ADMIN_PATH, API_KEYS_FILE, API_TOKEN, API_TOKEN_FILE, BIND, BODY_BUDGET_BYTES, BODY_TIMEOUT_MS,
    HEADER_TIMEOUT_MS, IDEMPOTENCY_KEY_TTL_SECS, KEEPALIVE_TIMEOUT_MS, LOG_FILE, LOG_LEVEL,
    MAX_BODY_BYTES, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PEER, MAX_DISCARD_BYTES, MAX_HEADER_BYTES,
    MAX_HEADERS, MAX_LIST_OFFSET, QUEUE_DEPTH, RATE_LIMIT_BURST, RATE_LIMIT_PER_SEC,
    REQUIRE_IF_MATCH, SERVED_BY, SHUTDOWN_TIMEOUT, Setting, TLS_CERT_FILE, TLS_KEY_FILE,
    TRUSTED_PROXIES, WORKERS, WRITE_TIMEOUT_MS,
};

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

/// `value` is none of the words `setting` declares.
fn not_one_of(setting: &'static Setting, value: &str) -> ConfigError {
    let words = match setting.parse {
        settings::Parse::Word(words) => words.join(", "),
        _ => String::new(),
    };
    err(setting.name, format!("{value:?} is not one of {words}"))
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
    /// The request rate allowed per client address, when limited.
    pub rate_limit: Option<RateLimit>,
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
        let env = Env::new(lookup);
        let server = server_config(&env)?;
        let db = database::db_config(&env, server.workers)?;
        let bind = env.socket_addr(&BIND)?;
        let (api_keys, warnings) = api_keys(&env)?;
        let https = https(&env)?;
        Ok(Config {
            db,
            bind,
            trusted_proxies: server.uncapped_peers.clone(),
            server,
            api_keys,
            https,
            warnings,
            log_level: log_level(&env.text(&LOG_LEVEL).unwrap_or_default())?,
            log_file: env.get(&LOG_FILE).map(PathBuf::from),
            served_by: served_by(env.get(&SERVED_BY)),
            rate_limit: rate_limit(&env)?,
            max_list_offset: env.number(&MAX_LIST_OFFSET)?,
            admin_path: admin_path(env.text(&ADMIN_PATH).unwrap_or_default())?,
            require_if_match: env.flag(&REQUIRE_IF_MATCH)?,
            idempotency_key_ttl: env.secs(&IDEMPOTENCY_KEY_TTL_SECS)?,
        })
    }
}

/// The connection layer's settings. Trusted proxies carry many clients, so the
/// per-address cap spares them.
fn server_config(env: &Env<'_>) -> Result<ServerConfig, ConfigError> {
    let workers = env.number(&WORKERS)?;
    let trusted_proxies = match env.get(&TRUSTED_PROXIES) {
        Some(list) => parse_list(&list).map_err(|e| err(TRUSTED_PROXIES.name, e))?,
        None => Vec::new(),
    };
    let max_connections: usize = env.number(&MAX_CONNECTIONS)?;
    Ok(ServerConfig {
        workers,
        max_body_bytes: env.number(&MAX_BODY_BYTES)?,
        max_discard_bytes: env.number(&MAX_DISCARD_BYTES)?,
        body_budget_bytes: env.number(&BODY_BUDGET_BYTES)?,
        max_connections,
        max_connections_per_peer: env
            .number_or(&MAX_CONNECTIONS_PER_PEER, (max_connections / 2).max(1))?,
        uncapped_peers: trusted_proxies,
        queue_depth: env.number(&QUEUE_DEPTH)?,
        header_timeout: env.millis(&HEADER_TIMEOUT_MS)?,
        body_timeout: env.millis(&BODY_TIMEOUT_MS)?,
        keepalive_timeout: env.millis(&KEEPALIVE_TIMEOUT_MS)?,
        write_timeout: env.millis(&WRITE_TIMEOUT_MS)?,
        max_header_bytes: env.number(&MAX_HEADER_BYTES)?,
        max_headers: env.number(&MAX_HEADERS)?,
        shutdown_timeout: env.secs(&SHUTDOWN_TIMEOUT)?,
    })
}

/// The connection layer's defaults are the service's: its settings at their declared
/// defaults, so that each default is written once, in [`settings`].
impl Default for ServerConfig {
    fn default() -> Self {
        // The declared defaults are constants, in range by construction; a unit test
        // (`server_config_defaults_are_the_declared_ones`) reads them.
        server_config(&Env::empty()).expect("the declared defaults are valid")
    }
}

/// `API_KEYS_FILE` (or the `api_keys` credential), else `API_TOKEN*` as one key, else
/// none; a keys file and a token at once is refused rather than one silently winning.
fn api_keys(env: &Env<'_>) -> Result<(Option<Arc<KeyStore>>, Vec<String>), ConfigError> {
    let token = env.secret(&API_TOKEN, &API_TOKEN_FILE, "api_token")?;
    let file = env
        .get(&API_KEYS_FILE)
        .map(PathBuf::from)
        .or_else(|| env.credential("api_keys"));
    match (file, token) {
        (Some(_), Some(_)) => Err(err(
            API_KEYS_FILE.name,
            "set either API_KEYS_FILE or API_TOKEN/API_TOKEN_FILE, not both \
             (the token can become a line of the keys file: see docs/api-keys.md)",
        )),
        (Some(path), None) => {
            let (store, warnings) =
                KeyStore::open(&path).map_err(|e| err(API_KEYS_FILE.name, e.to_string()))?;
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
    let (cert, key) = match (env.get(&TLS_CERT_FILE), env.get(&TLS_KEY_FILE)) {
        (Some(c), Some(k)) => (PathBuf::from(c), PathBuf::from(k)),
        (Some(_), None) => {
            return Err(err(
                TLS_KEY_FILE.name,
                "TLS_CERT_FILE is set but TLS_KEY_FILE is not",
            ));
        }
        (None, Some(_)) => {
            return Err(err(
                TLS_CERT_FILE.name,
                "TLS_KEY_FILE is set but TLS_CERT_FILE is not",
            ));
        }
        (None, None) => match (env.credential("tls_cert"), env.credential("tls_key")) {
            (Some(cert), Some(key)) => (cert, key),
            _ => return Ok(None),
        },
    };
    Https::open(&cert, &key)
        .map(|h| Some(Arc::new(h)))
        .map_err(|e| err(e.var, e.msg))
}

/// `RATE_LIMIT_PER_SEC` of 0 means no limit; the burst is read only with a rate.
fn rate_limit(env: &Env<'_>) -> Result<Option<RateLimit>, ConfigError> {
    let per_second = env.decimal(&RATE_LIMIT_PER_SEC)?;
    if per_second == 0.0 {
        return Ok(None);
    }
    let burst = env.decimal_or(&RATE_LIMIT_BURST, (per_second * 2.0).max(1.0))?;
    Ok(Some(RateLimit { per_second, burst }))
}

/// Unset means the default `/admin`; `off` turns the console off (an empty value counts
/// as unset here as everywhere, so it cannot be the way to turn it off).
/// SECURITY: the path is checked against the service's own route table, which the
/// unauthenticated console must never shadow; hence config's one import of `routes`.
fn admin_path(value: String) -> Result<Option<AdminPath>, ConfigError> {
    match value.trim() {
        v if v.eq_ignore_ascii_case("off") => Ok(None),
        v => AdminPath::parse(v, &ROUTES)
            .map(Some)
            .map_err(|e| err(ADMIN_PATH.name, e)),
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
        _ => Err(not_one_of(&LOG_LEVEL, s)),
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
