//! Memory per hostile connection, measured on the server binary as a child process: a
//! client that sends a head and most of a 64 KiB body, then nothing, used to cost the
//! server the whole body (about 69 KiB) for the body timeout, with `API_TOKEN` set and no
//! token sent. The head is refused now before the body is read. An idle HTTPS connection
//! cost 8.5 KiB, rustls' 4 KiB input buffer among it; 5 000 of them now fit in 32 MiB.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::chaos_support::{Memory, ServerProcess, mib};
use crate::common::{TempDir, fresh_database, poll_until};

const CONNECTIONS: usize = 300;

#[test]
fn body_holders_without_the_token_cost_the_server_almost_nothing() {
    let db = fresh_database();
    let server = ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("API_TOKEN", "memory-test-token".into()),
        ("MAX_CONNECTIONS_PER_PEER", "0".into()),
        ("BODY_TIMEOUT_MS", "60000".into()),
        ("LOG_LEVEL", "warn".into()),
    ]);
    let before = server.memory();
    let head = "POST /users HTTP/1.1\r\nHost: m\r\nContent-Type: application/json\r\n\
                Content-Length: 65536\r\n\r\n{";
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut s = TcpStream::connect(server.addr).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // The answer may close the connection while the body is still going out.
        let _ = s
            .write_all(head.as_bytes())
            .and_then(|()| s.write_all(&[b' '; 65_534]));
        held.push(s);
    }
    // Every connection has been read as far as the server will read it once RSS stops
    // growing; wait for two equal readings in a row.
    let mut last = 0;
    let settled = poll_until(Duration::from_secs(10), || {
        let now = server.memory().rss_kib;
        let same = now == last;
        last = now;
        same.then_some(now)
    });
    let during = Memory::of(server.pid());
    let grew = during.rss_kib.saturating_sub(before.rss_kib);
    eprintln!(
        "memory: {CONNECTIONS} body holders without a token: {} -> {} ({} each); settled: {}",
        mib(before.rss_kib),
        mib(during.rss_kib),
        grew / CONNECTIONS as u64,
        settled.is_some()
    );
    // Before: the whole 64 KiB body, about 69 KiB a connection (20 MiB here).
    assert!(
        grew < (CONNECTIONS as u64) * 8,
        "RSS grew by {} KiB for {CONNECTIONS} connections that may not even send a body",
        grew
    );
    drop(held);
}

/// Idle HTTPS connections: each completed its handshake and one request, then waits.
const TLS_IDLE: usize = 5_000;

/// The bound set for 5 000 of them, the whole server included.
const TLS_MEMORY_LIMIT_KIB: u64 = 32 * 1024;

#[test]
fn five_thousand_idle_https_connections_keep_the_server_under_32_mib() {
    let nofile = user_api::http::server::raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    let needed = (TLS_IDLE + 256) as u64;
    assert!(
        nofile >= needed,
        "this test holds {needed} sockets but the open-files hard limit is {nofile}"
    );
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("make a certificate");
    let dir = TempDir::new("tls-memory");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write the certificate");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write the key");
    let client = client_config(certified.cert.der().to_vec());

    let db = fresh_database();
    let server = ServerProcess::start_with(
        &[
            ("DATABASE_URL", db.url.clone()),
            ("TLS_CERT_FILE", cert.display().to_string()),
            ("TLS_KEY_FILE", key.display().to_string()),
            ("KEEPALIVE_TIMEOUT_MS", "120000".into()),
            // Every connection comes from 127.0.0.1 here.
            ("MAX_CONNECTIONS_PER_PEER", "0".into()),
            ("LOG_LEVEL", "warn".into()),
        ],
        |addr| https_get(addr, &client).is_ok(),
    );
    let before = server.memory();

    // Only the socket is kept: the client's TLS state is dropped (without a
    // close_notify), so this process does not hold 5 000 sessions too.
    let held: Vec<TcpStream> = (0..TLS_IDLE)
        .map(|_| https_get(server.addr, &client).expect("an HTTPS request"))
        .collect();

    let during = server.memory();
    let grew = during.rss_kib.saturating_sub(before.rss_kib);
    eprintln!(
        "memory: {TLS_IDLE} idle HTTPS connections ({} build): {} -> {} ({} B each)",
        crate::chaos_support::profile(),
        mib(before.rss_kib),
        mib(during.rss_kib),
        grew * 1024 / TLS_IDLE as u64,
    );
    // Before: rustls' buffered connection kept a 4 KiB input buffer per connection for
    // its whole life, 8.5 KiB each in all (46 MB for 5 000 on the static build).
    assert!(
        during.rss_kib <= TLS_MEMORY_LIMIT_KIB,
        "{TLS_IDLE} idle HTTPS connections: the server's RSS is {}, over {}",
        mib(during.rss_kib),
        mib(TLS_MEMORY_LIMIT_KIB)
    );
    drop(held);
}

fn client_config(trusted: Vec<u8>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(trusted))
        .expect("trust the certificate");
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A handshake and one request over a new connection; the socket, left open.
fn https_get(addr: SocketAddr, config: &Arc<ClientConfig>) -> io::Result<TcpStream> {
    let name = ServerName::try_from("localhost").expect("a server name");
    let conn = ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /health/live HTTP/1.1\r\nHost: memory\r\n\r\n")?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tls.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse())
        })
        .and_then(Result::ok)
        .unwrap_or(0);
    let mut body = vec![0; length];
    tls.read_exact(&mut body)?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(io::Error::other(format!("answered {head}")));
    }
    Ok(tls.sock)
}
