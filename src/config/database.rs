//! The database settings: `DATABASE_URL` or the `DB_*` variables, TLS to PostgreSQL, the
//! replica and the pool, built into the `DbConfig` the database layer takes.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::ChannelBinding;

use super::env::Env;
use super::settings::{
    DATABASE_READ_URL, DATABASE_URL, DB_CHANNEL_BINDING, DB_CONNECT_TIMEOUT, DB_HOST, DB_NAME,
    DB_PASSWORD, DB_PASSWORD_FILE, DB_POOL_SIZE, DB_POOL_TIMEOUT_MS, DB_PORT, DB_QUERY_TIMEOUT_MS,
    DB_READ_HOST, DB_READ_PORT, DB_SSLCERT, DB_SSLKEY, DB_SSLMODE, DB_SSLROOTCERT,
    DB_STATEMENT_CACHE, DB_STATEMENT_TIMEOUT_MS, DB_USER, Setting,
};
use super::{ConfigError, err, not_one_of};
use crate::db::tls::{Connector, Extracted, SslMode, TlsSettings, extract};
use crate::db::{DbConfig, Endpoint, StatementCache};

/// The primary, the replica (if any) and the pool; the pool is as large as `workers`
/// unless `DB_POOL_SIZE` says otherwise.
pub(super) fn db_config(env: &Env<'_>, workers: usize) -> Result<DbConfig, ConfigError> {
    let (mut pg, tls) = match env.get(&DATABASE_URL) {
        Some(url) => parse_url(env, &DATABASE_URL, &url)?,
        None => {
            let mut pg = tokio_postgres::Config::new();
            let host = env.text(&DB_HOST).unwrap_or_default();
            pg.host(&host)
                .port(env.number(&DB_PORT)?)
                .dbname(&env.require(&DB_NAME)?)
                .user(&env.require(&DB_USER)?);
            let tls = tls_settings(env, None)?;
            (pg, tls)
        }
    };
    // A password written into DATABASE_URL wins: it came with the user and host it belongs
    // to, while a DB_PASSWORD may come from elsewhere, e.g. a .env copied from .env.example
    // under scripts/dev, which sets DATABASE_URL with its own password.
    if pg.get_password().is_none() {
        if let Some(password) = env.secret(&DB_PASSWORD, &DB_PASSWORD_FILE, "db_password")? {
            pg.password(password.expose());
        }
    }
    let statement_timeout: u64 = env.number(&DB_STATEMENT_TIMEOUT_MS)?;
    let channel_binding = channel_binding(env)?;
    tune(&mut pg, statement_timeout, channel_binding);
    let var = if env.get(&DATABASE_URL).is_some() {
        DATABASE_URL.name
    } else {
        DB_SSLMODE.name
    };
    let replica = read_config(env, &pg, &tls, statement_timeout, channel_binding)?;
    let default_pool = u32::try_from(workers).unwrap_or(u32::MAX);
    Ok(DbConfig {
        primary: endpoint(var, pg, &tls)?,
        replica,
        pool_size: env.number_or(&DB_POOL_SIZE, default_pool)?,
        pool_timeout: env.millis(&DB_POOL_TIMEOUT_MS)?,
        connect_timeout: env.secs(&DB_CONNECT_TIMEOUT)?,
        query_timeout: Duration::from_millis(env.number_or(
            &DB_QUERY_TIMEOUT_MS,
            query_timeout_default(statement_timeout),
        )?),
        statement_cache: statement_cache(&env.text(&DB_STATEMENT_CACHE).unwrap_or_default())?,
    })
}

/// A connection URL (or libpq key=value string) and its TLS settings: the parameters
/// it names itself, the `DB_SSL*` variables for the rest.
fn parse_url(
    env: &Env<'_>,
    setting: &'static Setting,
    url: &str,
) -> Result<(tokio_postgres::Config, TlsSettings), ConfigError> {
    let var = setting.name;
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
    from_url: Option<(&'static str, &Extracted)>,
) -> Result<TlsSettings, ConfigError> {
    let pick =
        |url_value: Option<&String>, setting: &'static Setting| -> (Option<String>, &'static str) {
            match (url_value, from_url) {
                (Some(v), Some((url_var, _))) => (Some(v.clone()), url_var),
                _ => (env.text(setting), setting.name),
            }
        };
    let url = from_url.map(|(_, e)| e);
    let (mode, mode_var) = pick(url.and_then(|e| e.mode.as_ref()), &DB_SSLMODE);
    let mode = SslMode::parse(mode.unwrap_or_default().trim())
        .map_err(|e| err(mode_var, format!("sslmode {e}")))?;
    let file = |url_value: Option<&String>, setting: &'static Setting, credential: &str| {
        pick(url_value, setting)
            .0
            .map(PathBuf::from)
            .or_else(|| env.credential(credential))
    };
    Ok(TlsSettings {
        mode,
        root_cert: file(
            url.and_then(|e| e.root_cert.as_ref()),
            &DB_SSLROOTCERT,
            "db_sslrootcert",
        ),
        client_cert: file(
            url.and_then(|e| e.client_cert.as_ref()),
            &DB_SSLCERT,
            "db_sslcert",
        ),
        client_key: file(
            url.and_then(|e| e.client_key.as_ref()),
            &DB_SSLKEY,
            "db_sslkey",
        ),
    })
}

fn channel_binding(env: &Env<'_>) -> Result<Option<ChannelBinding>, ConfigError> {
    Ok(
        // Unset is not the declared `prefer`: the URL's own `channel_binding` stands.
        match env.get(&DB_CHANNEL_BINDING).as_deref().map(str::trim) {
            None => None,
            Some("disable") => Some(ChannelBinding::Disable),
            Some("prefer") => Some(ChannelBinding::Prefer),
            Some("require") => Some(ChannelBinding::Require),
            Some(other) => return Err(not_one_of(&DB_CHANNEL_BINDING, other)),
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

fn statement_cache(value: &str) -> Result<StatementCache, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(StatementCache::On),
        "off" | "false" | "0" => Ok(StatementCache::Off),
        v => Err(not_one_of(&DB_STATEMENT_CACHE, v)),
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
    // A literal IP skips the resolver thread every new connection to a host name starts
    // (`db::socket`).
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
    let (mut pg, tls, var) = if let Some(url) = env.get(&DATABASE_READ_URL) {
        let (pg, tls) = parse_url(env, &DATABASE_READ_URL, &url)?;
        (pg, tls, DATABASE_READ_URL.name)
    } else if let Some(host) = env.get(&DB_READ_HOST) {
        let port = *primary.get_ports().first().unwrap_or(&5432);
        let mut pg = tokio_postgres::Config::new();
        pg.host(&host).port(env.number_or(&DB_READ_PORT, port)?);
        if let Some(db) = primary.get_dbname() {
            pg.dbname(db);
        }
        if let Some(user) = primary.get_user() {
            pg.user(user);
        }
        (pg, primary_tls.clone(), DB_READ_HOST.name)
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
