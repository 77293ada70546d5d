//! Signals: SIGTERM and SIGINT stop the server gracefully; SIGHUP is logged and ignored.
//!
//! std cannot catch signals, and as PID 1 in a container an unhandled SIGTERM is
//! ignored until SIGKILL, so a small dedicated thread waits for them.

use std::io;
use std::thread;

use log::info;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::http::server::Stopper;
use crate::systemd;

/// Starts the signal thread; it stops `stopper` on the first SIGTERM or SIGINT.
pub fn spawn_signal_thread(stopper: Stopper) -> io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    info!("SIGHUP ignored: configuration is read at start-up only");
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
