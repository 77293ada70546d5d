//! Signals: SIGTERM and SIGINT stop the server gracefully; SIGHUP re-reads the API keys
//! file and the HTTPS certificate.
//!
//! std cannot catch signals, and as PID 1 in a container an unhandled SIGTERM is
//! ignored until SIGKILL, so a small dedicated thread waits for them.

use std::io;
use std::sync::Arc;
use std::thread;

use log::{error, info, warn};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::http::https::Https;
use crate::http::server::Stopper;
use crate::keys::KeyStore;
use crate::systemd;

/// Starts the signal thread; it stops `stopper` on the first SIGTERM or SIGINT, and
/// reloads `keys` and `https` on each SIGHUP.
pub fn spawn_signal_thread(
    stopper: Stopper,
    keys: Option<Arc<KeyStore>>,
    https: Option<Arc<Https>>,
) -> io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    reload(keys.as_deref());
                    if let Some(https) = &https {
                        reload_certificate(https);
                    }
                    continue;
                }
                let name = if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
                info!("{name} received: stopping gracefully");
                systemd::notify("STOPPING=1");
                stopper.stop();
            }
        })?;
    Ok(())
}

/// Re-reads the keys file. Connections and requests in flight are untouched: each
/// request keeps the set it started with, and the next one sees the new set.
pub fn reload(keys: Option<&KeyStore>) {
    let Some(store) = keys else {
        info!("SIGHUP: no API_KEYS_FILE to reload; other settings are read at start-up only");
        return;
    };
    match store.reload() {
        Ok(None) => info!("SIGHUP: API_TOKEN is read at start-up only; nothing to reload"),
        Ok(Some(r)) => {
            info!(
                "API keys reloaded: {} in force (added: {}; removed: {})",
                r.keys,
                list(&r.added),
                list(&r.removed)
            );
            for w in &r.warnings {
                warn!("{w}");
            }
        }
        Err(e) => {
            error!(
                "API keys NOT reloaded, keeping the {} in force: {} problem(s) in {}",
                store.current().len(),
                e.problems.len(),
                e.path.display()
            );
            for line in e.lines() {
                error!("{line}");
            }
        }
    }
}

/// Re-reads the HTTPS certificate and key: new handshakes use them, connections already
/// open keep their session. A file that fails to load leaves the old certificate.
pub fn reload_certificate(https: &Https) {
    match https.reload() {
        Ok(()) => info!(
            "SIGHUP: HTTPS certificate reloaded from {}; new connections use it",
            https.cert_file().display()
        ),
        Err(e) => error!("SIGHUP: HTTPS certificate NOT reloaded, keeping the old one: {e}"),
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
