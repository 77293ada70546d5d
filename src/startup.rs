//! Start-up: wait for the database, migrate, bind (or take systemd's socket), and run
//! until stopped.

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};

use crate::config::Config;
use crate::db::idempotency::Purger;
use crate::db::{self, Db, DbError, Session, WaitError};
use crate::error_chain::chain;
use crate::http::server::{self, Server, Stopper};
use crate::metrics::Metrics;
use crate::rate_limit::RateLimiter;
use crate::routes::{Ctx, ROUTES};
use crate::service::Service;
use crate::systemd;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the service could not start or stopped abnormally.
#[derive(Debug)]
pub enum StartupError {
    Database(DbError),
    Bind(SocketAddr, std::io::Error),
    Io(std::io::Error),
    /// A stop was asked for (SIGTERM, SIGINT) before the service was ready: not a
    /// failure, and the process exits 0.
    Stopped,
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupError::Database(e) => write!(f, "database: {}", chain(e)),
            StartupError::Bind(addr, e) => write!(f, "failed to bind to {addr}: {e}"),
            StartupError::Io(e) => write!(f, "{e}"),
            StartupError::Stopped => f.write_str("stopped before start-up finished"),
        }
    }
}

impl std::error::Error for StartupError {}

/// Waits for the database and applies the migrations; returns what it applied. A stop
/// asked for through `stopper` ends the wait.
pub fn migrate(config: &Config, stopper: &Stopper) -> Result<Vec<&'static str>, StartupError> {
    let mut client = wait_for_database(config, stopper)?;
    apply_migrations(&mut client)
}

/// One connection, once the database answers (see [`db::connect_with_retry`]).
fn wait_for_database(config: &Config, stopper: &Stopper) -> Result<Session, StartupError> {
    db::connect_with_retry(&config.db, || stopper.is_stopped()).map_err(|e| match e {
        WaitError::Database(e) => StartupError::Database(e),
        WaitError::Stopped => StartupError::Stopped,
    })
}

fn apply_migrations(client: &mut Session) -> Result<Vec<&'static str>, StartupError> {
    let version = client
        .simple_query("SHOW server_version")
        .ok()
        .and_then(|msgs| {
            msgs.into_iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
        })
        .unwrap_or_else(|| "unknown".into());
    info!("connected to PostgreSQL {version}");
    let applied = db::migrate::run(client).map_err(StartupError::Database)?;
    if applied.is_empty() {
        info!(
            "database schema is current (all {} migrations were applied before)",
            db::migrate::MIGRATIONS.len()
        );
    } else {
        info!("applied migrations: {}", applied.join(", "));
    }
    Ok(applied)
}

/// A built service: migrated, bound, not yet serving.
pub struct App {
    server: Server,
}

impl App {
    pub fn build(config: Config) -> Result<App, StartupError> {
        App::build_with_stopper(config, Stopper::default())
    }

    /// As [`App::build`], obeying `stopper` from the start: the signal handler is
    /// installed before the (possibly long) wait for the database, so that a SIGTERM
    /// then ends it at once instead of being ignored until SIGKILL.
    pub fn build_with_stopper(config: Config, stopper: Stopper) -> Result<App, StartupError> {
        info!("user-api {VERSION} starting");
        let mut client = wait_for_database(&config, &stopper)?;
        // The database answers: the pool opens its connections in the background while
        // the migrations run, rather than one handshake after another.
        let db = Db::new(&config.db);
        apply_migrations(&mut client)?;
        drop(client);
        let listener = match systemd::inherited_listener() {
            Some(l) => l,
            None => {
                TcpListener::bind(config.bind).map_err(|e| StartupError::Bind(config.bind, e))?
            }
        };
        // Serve only once a pooled connection is open, so the first requests after
        // start-up don't race the pool's background connects into a 503.
        if let Err(e) = db.ping() {
            warn!(
                "no pooled database connection yet ({}); serving anyway",
                chain(&e)
            );
        }
        match &config.api_keys {
            None => warn!(
                "API_TOKEN is not set, nor API_KEYS_FILE: the /user and /users routes are open to anyone who can connect"
            ),
            Some(store) => info!(
                "API keys: {} from {}",
                store.current().len(),
                store
                    .file()
                    .map_or("API_TOKEN".into(), |f| f.display().to_string())
            ),
        }
        for warning in &config.warnings {
            warn!("{warning}");
        }
        // Expired keys are already ignored; the purge only reclaims their space, so it
        // runs at most once a minute, and as often as keys expire when that is sooner.
        let purger = Purger::spawn(
            config.db.primary.clone(),
            config.db.query_timeout,
            config.idempotency_key_ttl.min(Duration::from_secs(60)),
        )
        .map_err(StartupError::Io)?;
        let service = Service {
            ctx: Ctx {
                db,
                metrics: Metrics::new(VERSION, ROUTES.labels()),
                keys: config.api_keys.clone(),
                max_body_bytes: config.server.max_body_bytes,
                require_if_match: config.require_if_match,
                idempotency_key_ttl: config.idempotency_key_ttl,
                purger: Some(purger),
                max_list_offset: config.max_list_offset,
            },
            served_by: config.served_by.clone(),
            rate_limiter: config
                .rate_limit
                .map(|limit| RateLimiter::new(limit.per_second, limit.burst)),
            trusted_proxies: config.trusted_proxies.clone(),
            admin_path: config.admin_path.clone(),
            refusal_log: Default::default(),
        };
        // Each connection is a descriptor: take all the kernel allows us, so that
        // MAX_CONNECTIONS (clamped below it) is what limits us, not a default of 1024.
        match server::raise_nofile_limit() {
            Ok(n) => info!("open file limit: {n}"),
            Err(e) => warn!("could not raise the open file limit: {e}"),
        }
        let mut server = Server::new(listener, config.server.clone(), Arc::new(service))
            .and_then(|s| s.with_stopper(stopper))
            .map_err(StartupError::Io)?;
        if let Some(https) = &config.https {
            server = server.with_https(Arc::clone(https));
        }
        info!(
            "listening on {} ({}) with {} workers and a pool of {} connections",
            server.local_addr(),
            match &config.https {
                Some(h) => format!("HTTPS, certificate {}", h.cert_file().display()),
                None => "plain HTTP".into(),
            },
            config.server.workers,
            config.db.pool_size
        );
        match &config.admin_path {
            Some(p) => info!("admin console at {}/", p.as_str()),
            None => info!("admin console off (ADMIN_PATH=off)"),
        }
        info!(
            "limits: {} connections, {} queued requests, bodies up to {} bytes",
            server.config().max_connections,
            server.config().queue_depth,
            server.config().max_body_bytes
        );
        Ok(App { server })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn stopper(&self) -> Stopper {
        self.server.stopper()
    }

    /// Serves until stopped, then drains requests in flight; the pool closes as the
    /// service is dropped.
    pub fn run_until_stopped(self) -> Result<(), StartupError> {
        systemd::notify("READY=1");
        self.server.run().map_err(StartupError::Io)?;
        info!("stopped");
        Ok(())
    }
}
