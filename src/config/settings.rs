//! The settings table: every environment variable the service reads, declared once with
//! its default, how its value is read, its help text and whether it is a secret.
//!
//! Everything else takes these facts from here: reading the environment (`config::env`),
//! `--help` (`cli`), `ServerConfig::default()`, and the unit test that holds
//! `.env.example` and docs/configuration.md to the table.

use crate::domain::DEFAULT_MAX_OFFSET;

/// One environment variable the service reads.
#[derive(Debug)]
pub struct Setting {
    pub name: &'static str,
    pub default: Default,
    /// How the value is read.
    pub parse: Parse,
    /// One line for `--help` and the configuration reference.
    pub help: &'static str,
    /// SECURITY: the value may never be printed, logged or quoted in an error.
    pub secret: bool,
}

/// What an unset (or empty) variable means.
#[derive(Debug, Clone, Copy)]
pub enum Default {
    /// Nothing: the feature is off, or another setting stands in (help says which).
    None,
    /// This value, as it would be written in the environment.
    Text(&'static str),
    /// This number.
    Number(u64),
    /// Computed from other settings, as described.
    Derived(&'static str),
}

/// How a variable's value is read.
#[derive(Debug, Clone, Copy)]
pub enum Parse {
    /// A whole number from `min` to `max`.
    Number { min: u64, max: u64 },
    /// A decimal number from `min` to `max`.
    Decimal { min: f64, max: f64 },
    /// `true` or `false`.
    Bool,
    /// `host:port` with a literal IP address.
    SocketAddr,
    /// One of these words.
    Word(&'static [&'static str]),
    /// Text read by the code that uses it: a name, a path, a URL, a list of CIDRs.
    Text,
}

impl Setting {
    /// The default as `--help` and the docs show it: `-` for none.
    pub fn default_text(&self) -> String {
        match self.default {
            Default::None => "-".to_owned(),
            Default::Text(t) | Default::Derived(t) => t.to_owned(),
            Default::Number(n) => n.to_string(),
        }
    }
}

/// Shorthand for the table below.
const fn setting(
    name: &'static str,
    default: Default,
    parse: Parse,
    help: &'static str,
) -> Setting {
    Setting {
        name,
        default,
        parse,
        help,
        secret: false,
    }
}

/// As [`setting`], for a value that must never be shown.
const fn secret(name: &'static str, help: &'static str) -> Setting {
    Setting {
        name,
        default: Default::None,
        parse: Parse::Text,
        help,
        secret: true,
    }
}

const fn number(
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
    help: &'static str,
) -> Setting {
    setting(
        name,
        Default::Number(default),
        Parse::Number { min, max },
        help,
    )
}

const fn text(name: &'static str, help: &'static str) -> Setting {
    setting(name, Default::None, Parse::Text, help)
}

/// Where the service listens unless `BIND` says otherwise (the health check asks there too).
pub const DEFAULT_BIND: &str = "0.0.0.0:5000";

/// The longest any of the `*_MS` timeouts may be: a day.
const DAY_MS: u64 = 86_400_000;

pub const DATABASE_URL: Setting = secret(
    "DATABASE_URL",
    "postgres://user:pass@host:port/db; when set, the DB_* below are ignored (the password ones too when the URL has a password)",
);
pub const DB_HOST: Setting = setting(
    "DB_HOST",
    Default::Text("localhost"),
    Parse::Text,
    "PostgreSQL host name, IP address, or unix socket directory",
);
pub const DB_PORT: Setting = number("DB_PORT", 5432, 1, 65535, "PostgreSQL port");
pub const DB_NAME: Setting = text("DB_NAME", "database name (required without DATABASE_URL)");
pub const DB_USER: Setting = text("DB_USER", "database user (required without DATABASE_URL)");
pub const DB_PASSWORD: Setting = secret(
    "DB_PASSWORD",
    "database password (a password inside DATABASE_URL wins)",
);
pub const DB_PASSWORD_FILE: Setting = text(
    "DB_PASSWORD_FILE",
    "file holding the password (else $CREDENTIALS_DIRECTORY/db_password)",
);
pub const DB_SSLMODE: Setting = setting(
    "DB_SSLMODE",
    Default::Text("prefer"),
    Parse::Word(&["disable", "prefer", "require", "verify-ca", "verify-full"]),
    "TLS to PostgreSQL: disable, prefer, require, verify-ca or verify-full (libpq's meanings)",
);
pub const DB_SSLROOTCERT: Setting = text(
    "DB_SSLROOTCERT",
    "PEM file of the CA(s) to verify the server against (else $CREDENTIALS_DIRECTORY/db_sslrootcert)",
);
pub const DB_SSLCERT: Setting = text(
    "DB_SSLCERT",
    "PEM client certificate, for cert authentication (else $CREDENTIALS_DIRECTORY/db_sslcert)",
);
pub const DB_SSLKEY: Setting = text(
    "DB_SSLKEY",
    "PEM key of DB_SSLCERT (else $CREDENTIALS_DIRECTORY/db_sslkey)",
);
pub const DB_CHANNEL_BINDING: Setting = setting(
    "DB_CHANNEL_BINDING",
    Default::Text("prefer"),
    Parse::Word(&["disable", "prefer", "require"]),
    "SCRAM channel binding over TLS: disable, prefer or require",
);
pub const DATABASE_READ_URL: Setting = secret(
    "DATABASE_READ_URL",
    "a streaming replica for GET requests (falls back to the primary when it is down)",
);
pub const DB_READ_HOST: Setting = text(
    "DB_READ_HOST",
    "or: the replica's host, with the primary's database, user and password",
);
pub const DB_READ_PORT: Setting = setting(
    "DB_READ_PORT",
    Default::Derived("DB_PORT"),
    Parse::Number { min: 1, max: 65535 },
    "the replica's port, with DB_READ_HOST",
);
pub const DB_POOL_SIZE: Setting = setting(
    "DB_POOL_SIZE",
    Default::Derived("WORKERS"),
    Parse::Number { min: 1, max: 1024 },
    "pooled PostgreSQL connections",
);
pub const DB_STATEMENT_CACHE: Setting = setting(
    "DB_STATEMENT_CACHE",
    Default::Text("on"),
    Parse::Word(&["on", "off"]),
    "on: each connection prepares a statement once and reuses it; off: unnamed \
     statements, for PgBouncer in transaction mode before 1.21",
);
pub const DB_POOL_TIMEOUT_MS: Setting = number(
    "DB_POOL_TIMEOUT_MS",
    1000,
    1,
    600_000,
    "how long a request waits for a pooled connection before a 503",
);
pub const DB_CONNECT_TIMEOUT: Setting = number(
    "DB_CONNECT_TIMEOUT",
    30,
    0,
    86_400,
    "seconds to keep retrying the database at start-up",
);
pub const DB_STATEMENT_TIMEOUT_MS: Setting = number(
    "DB_STATEMENT_TIMEOUT_MS",
    5000,
    0,
    DAY_MS,
    "server-side limit on one statement (0: none, and no start-up option is sent)",
);
pub const DB_QUERY_TIMEOUT_MS: Setting = setting(
    "DB_QUERY_TIMEOUT_MS",
    Default::Derived("statement timeout + 500, or 5500"),
    Parse::Number {
        min: 1,
        max: DAY_MS,
    },
    "client-side limit on each exchange with the database, handshake included; \
     past it the connection is dropped and the request gets a 503",
);
pub const BIND: Setting = setting(
    "BIND",
    Default::Text(DEFAULT_BIND),
    Parse::SocketAddr,
    "address and port to listen on (ignored under socket activation)",
);
pub const WORKERS: Setting = number(
    "WORKERS",
    16,
    1,
    1024,
    "threads running requests (each holds a connection only while it queries)",
);
pub const MAX_BODY_BYTES: Setting = number(
    "MAX_BODY_BYTES",
    65_536,
    0,
    64 << 20,
    "largest request body; larger ones get 413 unread",
);
pub const BODY_BUDGET_BYTES: Setting = number(
    "BODY_BUDGET_BYTES",
    8 << 20,
    0,
    1 << 30,
    "request body bytes all connections together may hold; past it a request with a body gets 503",
);
pub const MAX_DISCARD_BYTES: Setting = number(
    "MAX_DISCARD_BYTES",
    1 << 20,
    0,
    1 << 30,
    "a larger declared body is still read (and thrown away) up to this size, so its 413 \
     reaches the client or proxy instead of a reset",
);
pub const MAX_LIST_OFFSET: Setting = number(
    "MAX_LIST_OFFSET",
    DEFAULT_MAX_OFFSET as u64,
    0,
    i64::MAX as u64,
    "deepest offset GET /users accepts (400 past it: page with after_id instead)",
);
pub const MAX_CONNECTIONS: Setting = number(
    "MAX_CONNECTIONS",
    10_000,
    1,
    1_000_000,
    "open client connections at most; at the cap a new one replaces the longest idle one, else gets a fast 503",
);
pub const MAX_CONNECTIONS_PER_PEER: Setting = setting(
    "MAX_CONNECTIONS_PER_PEER",
    Default::Derived("MAX_CONNECTIONS / 2"),
    Parse::Number {
        min: 0,
        max: 1_000_000,
    },
    "open connections from one address at most (0: no cap; TRUSTED_PROXIES are exempt); \
     more get a fast 503",
);
pub const QUEUE_DEPTH: Setting = number(
    "QUEUE_DEPTH",
    1024,
    1,
    1_000_000,
    "complete requests waiting for a worker at most; more get 503",
);
pub const HEADER_TIMEOUT_MS: Setting = number(
    "HEADER_TIMEOUT_MS",
    10_000,
    1,
    DAY_MS,
    "time to send a complete request head (408 after)",
);
pub const BODY_TIMEOUT_MS: Setting = number(
    "BODY_TIMEOUT_MS",
    30_000,
    1,
    DAY_MS,
    "time to send the body once the head is in (408 after)",
);
pub const KEEPALIVE_TIMEOUT_MS: Setting = number(
    "KEEPALIVE_TIMEOUT_MS",
    60_000,
    1,
    DAY_MS,
    "how long an idle keep-alive connection is kept",
);
pub const WRITE_TIMEOUT_MS: Setting = number(
    "WRITE_TIMEOUT_MS",
    10_000,
    1,
    DAY_MS,
    "how long writing one response may take",
);
pub const MAX_HEADER_BYTES: Setting = number(
    "MAX_HEADER_BYTES",
    16_384,
    1024,
    1 << 20,
    "largest request head (431 past it)",
);
pub const MAX_HEADERS: Setting = number(
    "MAX_HEADERS",
    64,
    8,
    1024,
    "most header fields in a request (431 past it)",
);
pub const SHUTDOWN_TIMEOUT: Setting = number(
    "SHUTDOWN_TIMEOUT",
    10,
    0,
    3600,
    "seconds a graceful stop waits for requests in flight",
);
pub const TLS_CERT_FILE: Setting = text(
    "TLS_CERT_FILE",
    "PEM certificate chain, leaf first: serve HTTPS instead of HTTP, re-read on SIGHUP (else $CREDENTIALS_DIRECTORY/tls_cert); see docs/tls.md",
);
pub const TLS_KEY_FILE: Setting = text(
    "TLS_KEY_FILE",
    "PEM private key of TLS_CERT_FILE (else $CREDENTIALS_DIRECTORY/tls_key)",
);
pub const API_KEYS_FILE: Setting = text(
    "API_KEYS_FILE",
    "API keys file, re-read on SIGHUP (else $CREDENTIALS_DIRECTORY/api_keys); see docs/api-keys.md",
);
pub const API_TOKEN: Setting = secret(
    "API_TOKEN",
    "or: one key with every scope; /user and /users need Authorization: Bearer <token>",
);
pub const API_TOKEN_FILE: Setting = text(
    "API_TOKEN_FILE",
    "file holding the token (else $CREDENTIALS_DIRECTORY/api_token)",
);
pub const REQUIRE_IF_MATCH: Setting = setting(
    "REQUIRE_IF_MATCH",
    Default::Text("false"),
    Parse::Bool,
    "when true, PUT, PATCH and DELETE of a user need If-Match (428 without it)",
);
pub const IDEMPOTENCY_KEY_TTL_SECS: Setting = number(
    "IDEMPOTENCY_KEY_TTL_SECS",
    86_400,
    1,
    30 * 86_400,
    "how long a stored Idempotency-Key answer is replayed before the key expires",
);
pub const RATE_LIMIT_PER_SEC: Setting = setting(
    "RATE_LIMIT_PER_SEC",
    Default::Number(0),
    Parse::Decimal { min: 0.0, max: 1e9 },
    "requests per second per client address (0: no limit); past it, 429",
);
pub const RATE_LIMIT_BURST: Setting = setting(
    "RATE_LIMIT_BURST",
    Default::Derived("2 x RATE_LIMIT_PER_SEC"),
    Parse::Decimal { min: 1.0, max: 1e9 },
    "requests a client may make at once before the rate applies",
);
pub const TRUSTED_PROXIES: Setting = text(
    "TRUSTED_PROXIES",
    "addresses/CIDRs whose X-Forwarded-For names the client (e.g. 10.0.0.0/8)",
);
pub const LOG_LEVEL: Setting = setting(
    "LOG_LEVEL",
    Default::Text("info"),
    Parse::Word(&["off", "error", "warn", "info", "debug", "trace"]),
    "off, error, warn, info, debug or trace",
);
pub const LOG_FILE: Setting = text("LOG_FILE", "also append the log to this file");
pub const ADMIN_PATH: Setting = setting(
    "ADMIN_PATH",
    Default::Text("/admin"),
    Parse::Text,
    "where the browser admin console is served (`off`: not at all); see docs/admin.md",
);
pub const SERVED_BY: Setting = text(
    "SERVED_BY",
    "send X-Served-By: this value on every response (`hostname`: the host name)",
);

/// Every setting, in the order `--help` and docs/configuration.md list them. A unit test
/// checks that this is exactly what the service reads.
pub const SETTINGS: &[&Setting] = &[
    &DATABASE_URL,
    &DB_HOST,
    &DB_PORT,
    &DB_NAME,
    &DB_USER,
    &DB_PASSWORD,
    &DB_PASSWORD_FILE,
    &DB_SSLMODE,
    &DB_SSLROOTCERT,
    &DB_SSLCERT,
    &DB_SSLKEY,
    &DB_CHANNEL_BINDING,
    &DATABASE_READ_URL,
    &DB_READ_HOST,
    &DB_READ_PORT,
    &DB_POOL_SIZE,
    &DB_STATEMENT_CACHE,
    &DB_POOL_TIMEOUT_MS,
    &DB_CONNECT_TIMEOUT,
    &DB_STATEMENT_TIMEOUT_MS,
    &DB_QUERY_TIMEOUT_MS,
    &BIND,
    &WORKERS,
    &MAX_BODY_BYTES,
    &BODY_BUDGET_BYTES,
    &MAX_DISCARD_BYTES,
    &MAX_LIST_OFFSET,
    &MAX_CONNECTIONS,
    &MAX_CONNECTIONS_PER_PEER,
    &QUEUE_DEPTH,
    &HEADER_TIMEOUT_MS,
    &BODY_TIMEOUT_MS,
    &KEEPALIVE_TIMEOUT_MS,
    &WRITE_TIMEOUT_MS,
    &MAX_HEADER_BYTES,
    &MAX_HEADERS,
    &SHUTDOWN_TIMEOUT,
    &TLS_CERT_FILE,
    &TLS_KEY_FILE,
    &API_KEYS_FILE,
    &API_TOKEN,
    &API_TOKEN_FILE,
    &REQUIRE_IF_MATCH,
    &IDEMPOTENCY_KEY_TTL_SECS,
    &RATE_LIMIT_PER_SEC,
    &RATE_LIMIT_BURST,
    &TRUSTED_PROXIES,
    &LOG_LEVEL,
    &LOG_FILE,
    &ADMIN_PATH,
    &SERVED_BY,
];

/// The names of every setting, in table order (for tests and tools outside the crate).
pub fn names() -> impl Iterator<Item = &'static str> {
    SETTINGS.iter().map(|s| s.name)
}
