//! A stand-alone connection layer with a dummy handler, for measuring it by hand: memory
//! under many idle and slow connections, latency while they are held.
//!
//! `cargo run --release --example echo_server -- 127.0.0.1:0` prints `listening on ADDR`
//! and serves until SIGINT or SIGTERM. `HEADER_TIMEOUT_SECS` and `KEEPALIVE_TIMEOUT_SECS`
//! override those two timeouts, so a measurement can hold connections longer than the
//! defaults allow. With `TLS_CERT_FILE` and `TLS_KEY_FILE` it serves HTTPS, as the
//! service does (`scripts/idle_load.py --cafile` measures idle TLS connections). See
//! `scripts/idle_load.py`.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use user_api::http::https::Https;
use user_api::http::server::{Server, ServerConfig, raise_nofile_limit};
use user_api::http::{Body, Request, Response};

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let nofile = raise_nofile_limit()?;
    let mut config = ServerConfig::default();
    if let Some(secs) = env_secs("HEADER_TIMEOUT_SECS") {
        config.header_timeout = secs;
    }
    // A measurement's connections all come from 127.0.0.1: only the total cap applies.
    config.max_connections_per_peer = config.max_connections;
    if let Some(secs) = env_secs("KEEPALIVE_TIMEOUT_SECS") {
        config.keepalive_timeout = secs;
    }
    let mut server = Server::new(TcpListener::bind(&addr)?, config, Arc::new(echo))?;
    if let (Some(cert), Some(key)) = (
        std::env::var_os("TLS_CERT_FILE"),
        std::env::var_os("TLS_KEY_FILE"),
    ) {
        let https = Https::open(cert.as_ref(), key.as_ref()).map_err(io::Error::other)?;
        server = server.with_https(Arc::new(https));
    }
    println!(
        "listening on {} (open-files limit {nofile}, max_connections {})",
        server.local_addr(),
        server.config().max_connections
    );
    let stopper = server.stopper();
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            stopper.stop();
        }
    });
    server.run()
}

fn env_secs(name: &str) -> Option<Duration> {
    let value = std::env::var(name).ok()?;
    value.parse().ok().map(Duration::from_secs)
}

/// Answers with the method, path and body size as JSON.
fn echo(req: Request) -> Response {
    let body_len = match &req.body {
        Body::Complete(b) => Some(b.len()),
        Body::TooLarge => None,
    };
    let json = serde_json::json!({
        "method": req.method.as_str(),
        "path": req.path,
        "body_bytes": body_len,
    });
    Response::json_bytes(200, json.to_string().into_bytes())
}
