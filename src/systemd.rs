//! The two pieces of the systemd protocol we speak without libsystemd: readiness
//! notification (`NOTIFY_SOCKET`) and socket activation (`LISTEN_FDS`).
#![allow(unsafe_code)]

use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1`) to the service manager, if there is one. Failures are
/// ignored: without a manager listening there is nobody to tell.
pub fn notify(state: &str) {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let sent = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        log::debug!("sd_notify {state:?} to {path}: {e}");
    }
}

/// The listening socket systemd passed us, when `LISTEN_PID` names this process and
/// `LISTEN_FDS` is 1 (fd 3). The variables are removed so children don't inherit them.
pub fn inherited_listener() -> Option<TcpListener> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds < 1 {
        return None;
    }
    if fds > 1 {
        log::warn!("LISTEN_FDS={fds}: serving on the first socket only");
    }
    // SAFETY: the service manager hands us fd 3 open and owned by this process (that is
    // what LISTEN_PID = our pid promises), and nothing else in the process has taken it:
    // this runs once, at start-up, before any other file is opened by us.
    let listener = unsafe {
        use std::os::fd::FromRawFd;
        TcpListener::from_raw_fd(3)
    };
    Some(listener)
}
