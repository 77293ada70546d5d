//! HTTPS for clients: the API over TLS with certificates this test makes, spoken to by
//! real clients (a rustls client, curl, openssl s_client, Python's ssl), the plain-HTTP
//! mistake, idle handshakes, and certificate reload on SIGHUP.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{Value, json};

use common::client::read_response_from;
use common::{TempDir, TestApp, free_port, poll_until, spawn_app_with};

/// A self-signed certificate for localhost and 127.0.0.1, its key, and its DER.
struct Cert {
    pem: String,
    key: String,
    der: Vec<u8>,
}

fn make_cert() -> Cert {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("make a certificate");
    Cert {
        pem: c.cert.pem(),
        key: c.signing_key.serialize_pem(),
        der: c.cert.der().to_vec(),
    }
}

/// Files of one certificate in a temporary directory.
struct Files {
    dir: TempDir,
    cert: PathBuf,
    key: PathBuf,
}

fn write_files(c: &Cert) -> Files {
    let dir = TempDir::new("https");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, &c.pem).unwrap();
    std::fs::write(&key, &c.key).unwrap();
    Files { dir, cert, key }
}

/// The app serving HTTPS with `files`, ready (its pool open) when returned.
fn https_app(files: &Files, der: &[u8]) -> TestApp {
    let (cert, key) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    let app = spawn_app_with(|vars| {
        vars.insert("TLS_CERT_FILE".into(), cert);
        vars.insert("TLS_KEY_FILE".into(), key);
    });
    let ready = poll_until(Duration::from_secs(30), || {
        let mut s = try_tls_connect(app.addr, der)?;
        (exchange(&mut s, "GET", "/health/ready", None).0 == 200).then_some(())
    });
    assert!(
        ready.is_some(),
        "/health/ready did not answer 200 over HTTPS within 30 s"
    );
    app
}

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A rustls client trusting `trusted` only, connected and handshaken.
fn tls_connect(addr: SocketAddr, trusted: &[u8]) -> TlsStream {
    try_tls_connect(addr, trusted).expect("connect and handshake")
}

fn try_tls_connect(addr: SocketAddr, trusted: &[u8]) -> Option<TlsStream> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(trusted.to_vec())).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let conn = ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
        .unwrap();
    let tcp = TcpStream::connect(addr).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).ok()?;
    }
    Some(s)
}

/// One request on `s`; returns the status and the body.
fn exchange(
    s: &mut impl ReadWrite,
    method: &str,
    target: &str,
    body: Option<&Value>,
) -> (u16, Vec<u8>) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    s.flush().unwrap();
    read_response(s)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Reads one response with the harness's parser (tests/common/client.rs). Requests and
/// responses go in lockstep, so nothing follows the response that reading ahead could lose.
fn read_response(s: &mut impl Read) -> (u16, Vec<u8>) {
    let r = read_response_from(&mut BufReader::new(s), false).expect("read the response");
    (r.status, r.body)
}

#[test]
fn over_https_the_api_answers_create_read_list_delete_on_one_kept_alive_connection() {
    let cert = make_cert();
    let files = write_files(&cert);
    let app = https_app(&files, &cert.der);
    let mut s = tls_connect(app.addr, &cert.der);
    assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (status, body) = exchange(
        &mut s,
        "POST",
        "/user",
        Some(&json!({"first_name": "Ada", "last_name": "Lovelace"})),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let created: Value = serde_json::from_slice(&body).unwrap();
    let id = created["id"].as_i64().unwrap();
    let (status, body) = exchange(&mut s, "GET", &format!("/user/{id}"), None);
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), created);
    let (status, body) = exchange(&mut s, "GET", "/users", None);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("Lovelace"));
    let (status, _) = exchange(&mut s, "DELETE", &format!("/user/{id}"), None);
    assert_eq!(status, 204);
    let (status, _) = exchange(&mut s, "GET", &format!("/user/{id}"), None);
    assert_eq!(status, 404);
}

#[test]
fn plain_http_sent_to_the_https_port_gets_a_plain_400_and_a_close() {
    let cert = make_cert();
    let files = write_files(&cert);
    let app = https_app(&files, &cert.der);
    let mut tcp = TcpStream::connect(app.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    tcp.read_to_end(&mut all)
        .expect("the server closes, never hangs");
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(
        text.contains(r#"{"error":"this port speaks HTTPS"#),
        "{text}"
    );
}

/// Runs a command to its end, with its output, failing the test if it cannot start:
/// .ci/run installs curl, openssl and python3.
fn run(cmd: &mut Command) -> std::process::Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (installed by .ci/run): {e}"))
}

#[test]
fn curl_with_the_certificate_as_its_ca_gets_the_health_over_https() {
    let cert = make_cert();
    let files = write_files(&cert);
    let app = https_app(&files, &cert.der);
    let url = format!("https://localhost:{}/health/live", app.addr.port());
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&files.cert)
        .args([
            "--resolve",
            &format!("localhost:{}:127.0.0.1", app.addr.port()),
        ])
        .args(["-w", "\n%{http_code} %{http_version}", &url]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.ends_with("\n200 1.1"), "{stdout}");
    // Without the certificate as its CA, curl refuses the server.
    let out = run(Command::new("curl").args(["-sS", "--max-time", "10", &url]));
    assert!(!out.status.success(), "curl trusted an unknown certificate");
}

/// `openssl s_client` with one protocol flag: whether the handshake succeeded.
fn s_client(addr: SocketAddr, ca: &Path, flag: &str) -> (bool, String) {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
        ])
        .arg("-CAfile")
        .arg(ca)
        .args(["-verify_return_error", flag])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run openssl (installed by .ci/run): {e}"));
    // Close its stdin at once: s_client then ends after the handshake.
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = out.status.success() && text.contains("Verify return code: 0 (ok)");
    (ok, text)
}

#[test]
fn openssl_s_client_connects_with_tls_1_3_and_1_2_and_is_refused_1_1_and_1_0() {
    let cert = make_cert();
    let files = write_files(&cert);
    let app = https_app(&files, &cert.der);
    for (flag, protocol) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
        let (ok, text) = s_client(app.addr, &files.cert, flag);
        assert!(ok, "{flag} failed: {text}");
        assert!(text.contains(protocol), "{flag}: {text}");
        assert!(text.contains("ALPN") || text.contains(protocol), "{text}");
    }
    for flag in ["-tls1_1", "-tls1"] {
        let (ok, text) = s_client(app.addr, &files.cert, flag);
        assert!(!ok, "{flag} was accepted: {text}");
    }
}

#[test]
fn python_ssl_with_verification_gets_the_health_over_https() {
    let cert = make_cert();
    let files = write_files(&cert);
    let app = https_app(&files, &cert.der);
    let script = r#"
import ssl, sys, http.client
ctx = ssl.create_default_context(cafile=sys.argv[1])
c = http.client.HTTPSConnection("localhost", int(sys.argv[2]), context=ctx, timeout=10)
for _ in range(2):
    c.request("GET", "/health/live")
    r = c.getresponse()
    r.read()
    print(r.status, c.sock.version())
"#;
    let out = run(Command::new("python3")
        .args(["-c", script])
        .arg(&files.cert)
        .arg(app.addr.port().to_string()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "200 TLSv1.3\n200 TLSv1.3\n");
}

/// Time of `rounds` requests, each on a fresh TLS connection.
fn time_requests(addr: SocketAddr, der: &[u8], rounds: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..rounds {
        let mut s = tls_connect(addr, der);
        assert_eq!(exchange(&mut s, "GET", "/health/live", None).0, 200);
    }
    start.elapsed()
}

#[test]
fn clients_that_open_tls_and_send_nothing_do_not_hold_up_other_clients() {
    let cert = make_cert();
    let files = write_files(&cert);
    let app = https_app(&files, &cert.der);
    let baseline = time_requests(app.addr, &cert.der, 20);
    // Half opened TCP only, half sent the first handshake bytes and stopped.
    let mut idle = Vec::new();
    for n in 0..500 {
        let mut tcp = TcpStream::connect(app.addr).unwrap();
        if n % 2 == 0 {
            tcp.write_all(&[0x16, 0x03, 0x01, 0x00]).unwrap();
        }
        idle.push(tcp);
    }
    let loaded = time_requests(app.addr, &cert.der, 20);
    // Generous: a reactor blocked by one idle handshake would take the head timeout
    // (10 s) per request; a loaded machine makes both runs slower alike.
    assert!(
        loaded < baseline * 5 + Duration::from_secs(2),
        "20 requests took {loaded:?} beside 500 idle TLS clients, {baseline:?} without"
    );
    drop(idle);
}

// ---- the binary: SIGHUP reload --------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_user-api");

struct Serve {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(files: &Files, db_url: &str) -> Serve {
    let port = free_port();
    let log = files.dir.path().join("serve.log");
    let child = Command::new(BIN)
        .arg("serve")
        .current_dir(files.dir.path())
        .env_clear()
        .env("DATABASE_URL", db_url)
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("TLS_CERT_FILE", &files.cert)
        .env("TLS_KEY_FILE", &files.key)
        .env("LOG_LEVEL", "info")
        .env("LOG_FILE", &log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start user-api serve");
    Serve {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        log,
    }
}

/// The certificate the server shows to a new handshake, if it completes.
fn served_certificate(addr: SocketAddr, trusted: &[u8]) -> Option<Vec<u8>> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(trusted.to_vec())).ok()?;
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").ok()?).ok()?;
    let tcp = TcpStream::connect(addr).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).ok()?;
    }
    Some(s.conn.peer_certificates()?.first()?.to_vec())
}

fn sighup(child: &Child) {
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

fn log_has(path: &Path, needle: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle))
}

#[test]
fn sighup_reloads_the_certificate_for_new_handshakes_and_keeps_open_connections() {
    let old = make_cert();
    let files = write_files(&old);
    let db = common::fresh_database();
    let server = serve(&files, &db.url);
    let up = poll_until(Duration::from_secs(30), || {
        served_certificate(server.addr, &old.der)
    });
    assert_eq!(
        up.as_deref(),
        Some(&old.der[..]),
        "the server did not come up over HTTPS"
    );
    let mut open = tls_connect(server.addr, &old.der);
    assert_eq!(exchange(&mut open, "GET", "/health/live", None).0, 200);

    // A new certificate and key: new handshakes get it, the open connection goes on.
    let new = make_cert();
    std::fs::write(&files.cert, &new.pem).unwrap();
    std::fs::write(&files.key, &new.key).unwrap();
    sighup(&server.child);
    let seen = poll_until(Duration::from_secs(10), || {
        served_certificate(server.addr, &new.der).filter(|c| *c == new.der)
    });
    assert!(
        seen.is_some(),
        "new handshakes do not get the new certificate"
    );
    assert!(log_has(&server.log, "SIGHUP: HTTPS certificate reloaded"));
    assert_eq!(exchange(&mut open, "GET", "/health/live", None).0, 200);

    // A broken file: the new certificate stays, and the log says why.
    std::fs::write(&files.cert, "not a certificate").unwrap();
    sighup(&server.child);
    let logged = poll_until(Duration::from_secs(10), || {
        log_has(&server.log, "SIGHUP: HTTPS certificate NOT reloaded").then_some(())
    });
    assert!(logged.is_some(), "no log line for the broken file");
    assert_eq!(
        served_certificate(server.addr, &new.der).as_deref(),
        Some(&new.der[..])
    );
    assert_eq!(exchange(&mut open, "GET", "/health/live", None).0, 200);
}

// ---- the binary: healthcheck and bad settings -----------------------------------------

fn user_api(args: &[&str], envs: &[(&str, &Path)], bind: SocketAddr) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("BIND", bind.to_string())
        .env(
            "DATABASE_URL",
            format!("postgres://app:pw@127.0.0.1:{}/app", free_port()),
        );
    for (k, v) in envs {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

#[test]
fn healthcheck_speaks_https_trusting_exactly_the_configured_certificate() {
    let cert = make_cert();
    let files = write_files(&cert);
    let app = https_app(&files, &cert.der);
    let other = write_files(&make_cert());

    let out = user_api(
        &["healthcheck"],
        &[("TLS_CERT_FILE", &files.cert)],
        app.addr,
    );
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{line}");
    assert!(line.starts_with("healthy: 200 from https://"), "{line}");
    assert_eq!(line.lines().count(), 1);

    // Another certificate than the one served: refused.
    let out = user_api(
        &["healthcheck"],
        &[("TLS_CERT_FILE", &other.cert)],
        app.addr,
    );
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{line}");
    assert!(line.starts_with("unhealthy: https://"), "{line}");

    // Without the setting it asks in plain HTTP, which the HTTPS port refuses.
    let out = user_api(&["healthcheck"], &[], app.addr);
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{line}");
    assert!(line.starts_with("unhealthy: 400 from http://"), "{line}");
}

/// Variables and the files they name.
type Settings<'a> = Vec<(&'a str, &'a Path)>;

#[test]
fn bad_tls_settings_exit_2_with_one_line_naming_the_setting() {
    let cert = make_cert();
    let files = write_files(&cert);
    let other = write_files(&make_cert());
    let garbage = files.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "SECRET-LOOKING not pem").unwrap();
    let absent = files.dir.path().join("absent.pem");
    let cases: Vec<(&str, Settings<'_>, &str)> = vec![
        (
            "cert alone",
            vec![("TLS_CERT_FILE", &files.cert)],
            "TLS_KEY_FILE",
        ),
        (
            "key alone",
            vec![("TLS_KEY_FILE", &files.key)],
            "TLS_CERT_FILE",
        ),
        (
            "key of another certificate",
            vec![("TLS_CERT_FILE", &files.cert), ("TLS_KEY_FILE", &other.key)],
            "TLS_KEY_FILE",
        ),
        (
            "malformed certificate",
            vec![("TLS_CERT_FILE", &garbage), ("TLS_KEY_FILE", &files.key)],
            "TLS_CERT_FILE",
        ),
        (
            "unreadable key",
            vec![("TLS_CERT_FILE", &files.cert), ("TLS_KEY_FILE", &absent)],
            "TLS_KEY_FILE",
        ),
    ];
    let nowhere = SocketAddr::from(([127, 0, 0, 1], free_port()));
    for (case, envs, var) in cases {
        let out = user_api(&["serve"], &envs, nowhere);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{case}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{case}: {stderr}");
        assert!(
            stderr.contains(&format!("configuration error: {var}:")),
            "{case}: {stderr}"
        );
        assert!(!stderr.contains("SECRET-LOOKING"), "{case}: {stderr}");
    }
}
