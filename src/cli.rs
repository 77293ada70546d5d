//! The command line: commands, `--help`, the `keys` commands, and the `healthcheck`
//! client, which uses only the standard library because a `FROM scratch` image has no
//! curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::config::settings::{DEFAULT_BIND, SETTINGS};
use crate::http::https;
use crate::keys::{self, Scopes, secret};
use crate::startup::VERSION;

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Serve,
    Migrate,
    Healthcheck(Option<String>),
    Keys(KeysCommand),
    Help,
    Version,
}

/// `user-api keys ...`: work on a keys file without a server or a database.
#[derive(Debug, PartialEq, Eq)]
pub enum KeysCommand {
    /// `keys new NAME --scope SCOPES`: a fresh secret and its keys-file line.
    New { name: String, scopes: Scopes },
    /// `keys check FILE`: every problem of a keys file, one a line.
    Check(String),
}

/// Parses the arguments after the program name; the error is one line for stderr.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["serve"] => Ok(Command::Serve),
        ["migrate"] => Ok(Command::Migrate),
        ["healthcheck"] => Ok(Command::Healthcheck(None)),
        ["healthcheck", url] if !url.starts_with('-') => {
            Ok(Command::Healthcheck(Some((*url).to_owned())))
        }
        ["keys", rest @ ..] => parse_keys(rest).map(Command::Keys),
        ["-h" | "--help" | "help", ..] => Ok(Command::Help),
        ["-V" | "--version", ..] => Ok(Command::Version),
        [cmd, ..] if cmd.starts_with('-') => Err(format!("unknown option '{cmd}'")),
        ["serve" | "migrate" | "healthcheck", extra, ..] => {
            Err(format!("unexpected argument '{extra}'"))
        }
        [cmd, ..] => Err(format!("unknown command '{cmd}'")),
    }
}

fn parse_keys(args: &[&str]) -> Result<KeysCommand, String> {
    const USAGE: &str =
        "usage: user-api keys new NAME --scope read[,write] | user-api keys check FILE";
    match args {
        ["check", file] if !file.starts_with('-') => Ok(KeysCommand::Check((*file).to_owned())),
        ["new", rest @ ..] => {
            let (mut name, mut scopes) = (None, None);
            let mut rest = rest.iter();
            while let Some(&arg) = rest.next() {
                let value = match arg.strip_prefix("--scope") {
                    Some("") => rest.next().copied(),
                    Some(v) if v.starts_with('=') => Some(&v[1..]),
                    _ if arg.starts_with('-') => return Err(format!("unknown option '{arg}'")),
                    _ if name.is_none() => {
                        name = Some(arg);
                        continue;
                    }
                    _ => return Err(format!("unexpected argument '{arg}'")),
                };
                let value = value.ok_or("--scope needs a value: read, write or read,write")?;
                scopes = Some(Scopes::parse(value).map_err(|e| format!("--scope: {e}"))?);
            }
            let name = name.ok_or_else(|| format!("keys new needs a NAME ({USAGE})"))?;
            keys::check_name(name)?;
            let scopes =
                scopes.ok_or("keys new needs --scope read, --scope write or --scope read,write")?;
            Ok(KeysCommand::New {
                name: name.to_owned(),
                scopes,
            })
        }
        _ => Err(USAGE.to_owned()),
    }
}

/// Runs a `keys` command: 0 when done (or the file is sound), 2 when the file is not, 1
/// when the OS has no randomness to give.
pub fn run_keys(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::New { name, scopes } => match secret::generate() {
            Ok(s) => {
                println!("{s}");
                println!(
                    "{name} {scopes} {}",
                    secret::format_hash(&secret::digest(&s))
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("user-api: no random bytes from the operating system: {e}");
                ExitCode::FAILURE
            }
        },
        KeysCommand::Check(file) => {
            let (ok, lines) = check_keys_file(&file);
            for line in lines {
                println!("{line}");
            }
            ExitCode::from(if ok { 0 } else { 2 })
        }
    }
}

/// `keys check`: whether `file` would load, and one line per problem or warning (or one
/// line saying what it holds).
pub fn check_keys_file(file: &str) -> (bool, Vec<String>) {
    match keys::file::load(file.as_ref()) {
        Err(e) => (false, e.lines()),
        Ok(loaded) => {
            let mut lines: Vec<String> = loaded
                .warnings
                .iter()
                .map(|w| format!("warning: {w}"))
                .collect();
            let names: Vec<String> = loaded
                .keys
                .keys()
                .map(|k| format!("{} ({})", k.name(), k.scopes()))
                .collect();
            lines.push(format!(
                "{file}: ok, {} keys: {}",
                names.len(),
                names.join(", ")
            ));
            (true, lines)
        }
    }
}

/// `--help`: commands and every environment variable with its default (never a value).
pub fn help() -> String {
    let mut s = format!(
        "user-api {VERSION}: a user-management HTTP API over PostgreSQL\n\n\
         Usage: user-api [COMMAND]\n\n\
         Commands:\n  \
         serve              wait for the database, migrate, and serve (the default)\n  \
         migrate            apply the database migrations and exit\n  \
         healthcheck [URL]  GET /health on BIND (or URL); exit 0 on 200, else 1; over HTTPS,\n                     \
         trusting only TLS_CERT_FILE's certificate, when that is set\n  \
         keys new NAME --scope read[,write]\n                     \
         print a fresh secret, then its line for the keys file\n  \
         keys check FILE    check a keys file: one line per problem, exit 0 or 2\n\n\
         Options:\n  -h, --help         print this help\n  -V, --version      print the version\n\n\
         Environment (a .env file in the working directory is read first; real variables win):\n"
    );
    for setting in SETTINGS {
        s.push_str(&format!(
            "  {:<24}{} [default: {}]\n",
            setting.name,
            setting.help,
            setting.default_text()
        ));
    }
    s
}

/// `user-api healthcheck`: prints one line; exit 0 when healthy, else 1. Without a URL
/// it asks the address in `BIND` (after `.env`), as the server would bind it.
pub fn run_healthcheck(url: Option<&str>) -> ExitCode {
    let bind = std::env::var("BIND").ok();
    let cert = configured_certificate(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
    let (ok, line) = healthcheck_with(url, bind.as_deref(), cert.as_deref());
    println!("{line}");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The certificate the server serves HTTPS with, as `serve` finds it: `TLS_CERT_FILE`,
/// else the `tls_cert` systemd credential when `tls_key` is there too.
fn configured_certificate(var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(file) = var("TLS_CERT_FILE") {
        return Some(PathBuf::from(file));
    }
    let dir = PathBuf::from(var("CREDENTIALS_DIRECTORY")?);
    let (cert, key) = (dir.join("tls_cert"), dir.join("tls_key"));
    (cert.exists() && key.exists()).then_some(cert)
}

/// Runs the health check over plain HTTP and returns whether it passed, with one line
/// to print.
pub fn healthcheck(url: Option<&str>, bind: Option<&str>) -> (bool, String) {
    healthcheck_with(url, bind, None)
}

/// Runs the health check; with `cert` (the server's configured certificate) it speaks
/// HTTPS and trusts exactly that certificate, unless the URL says `http://`.
pub fn healthcheck_with(
    url: Option<&str>,
    bind: Option<&str>,
    cert: Option<&Path>,
) -> (bool, String) {
    let tls = match (url, cert) {
        (Some(u), _) if u.starts_with("http://") => None,
        (Some(u), None) if u.starts_with("https://") => {
            return (
                false,
                format!("unhealthy: {u}: HTTPS needs TLS_CERT_FILE, the certificate to expect"),
            );
        }
        (_, cert) => cert,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (authority, path) = match url {
        Some(u) => {
            let rest = u.strip_prefix("http://").unwrap_or(u);
            let rest = rest.strip_prefix("https://").unwrap_or(rest);
            match rest.find('/') {
                Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
                None => (rest.to_owned(), "/health".to_owned()),
            }
        }
        None => (
            local_authority(bind.unwrap_or(DEFAULT_BIND)),
            "/health".to_owned(),
        ),
    };
    match probe(&authority, &path, tls) {
        Ok(200) => (
            true,
            format!("healthy: 200 from {scheme}://{authority}{path}"),
        ),
        Ok(status) => (
            false,
            format!("unhealthy: {status} from {scheme}://{authority}{path}"),
        ),
        Err(e) => (
            false,
            format!("unhealthy: {scheme}://{authority}{path}: {e}"),
        ),
    }
}

/// The address to reach a server bound to `bind` from the same host.
fn local_authority(bind: &str) -> String {
    match bind.parse::<SocketAddr>() {
        Ok(SocketAddr::V4(a)) if a.ip().is_unspecified() => format!("127.0.0.1:{}", a.port()),
        Ok(SocketAddr::V6(a)) if a.ip().is_unspecified() => format!("[::1]:{}", a.port()),
        _ => bind.to_owned(),
    }
}

fn probe(authority: &str, path: &str, tls: Option<&Path>) -> std::io::Result<u16> {
    let timeout = Duration::from_secs(3);
    let addr = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("address resolves to nothing"))?;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    match tls {
        None => ask(stream, authority, path),
        Some(cert) => {
            let config = https::pinned_client(cert).map_err(std::io::Error::other)?;
            // The name is not checked (the certificate is), but the handshake needs one.
            let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(host.to_owned())
                .unwrap_or_else(|_| ServerName::from(std::net::Ipv4Addr::LOCALHOST));
            let conn =
                rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
            ask(rustls::StreamOwned::new(conn, stream), authority, path)
        }
    }
}

/// Sends the request and reads the status.
fn ask(mut stream: impl Read + Write, authority: &str, path: &str) -> std::io::Result<u16> {
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match stream.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    let line = String::from_utf8_lossy(&head[..n]);
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parse_knows_every_command() {
        assert_eq!(p(&[]), Ok(Command::Serve));
        assert_eq!(p(&["serve"]), Ok(Command::Serve));
        assert_eq!(p(&["migrate"]), Ok(Command::Migrate));
        assert_eq!(p(&["healthcheck"]), Ok(Command::Healthcheck(None)));
        assert_eq!(
            p(&["healthcheck", "http://x:1/h"]),
            Ok(Command::Healthcheck(Some("http://x:1/h".into())))
        );
        assert_eq!(p(&["--help"]), Ok(Command::Help));
        assert_eq!(
            p(&["keys", "check", "/etc/keys"]),
            Ok(Command::Keys(KeysCommand::Check("/etc/keys".into())))
        );
        let new = |scopes| {
            Ok(Command::Keys(KeysCommand::New {
                name: "dash".into(),
                scopes: Scopes::parse(scopes).unwrap(),
            }))
        };
        assert_eq!(p(&["keys", "new", "dash", "--scope", "read"]), new("read"));
        assert_eq!(
            p(&["keys", "new", "--scope=read,write", "dash"]),
            new("read,write")
        );
        assert_eq!(p(&["-V"]), Ok(Command::Version));
    }

    #[test]
    fn parse_fails_when_command_or_option_is_unknown() {
        assert!(
            p(&["frobnicate"])
                .unwrap_err()
                .contains("unknown command 'frobnicate'")
        );
        assert!(
            p(&["--port"])
                .unwrap_err()
                .contains("unknown option '--port'")
        );
        assert!(
            p(&["migrate", "now"])
                .unwrap_err()
                .contains("unexpected argument")
        );
        for (args, says) in [
            (&["keys"][..], "usage"),
            (&["keys", "new", "dash"], "--scope"),
            (&["keys", "new", "--scope", "read"], "NAME"),
            (&["keys", "new", "dash", "--scope"], "needs a value"),
            (
                &["keys", "new", "dash", "--scope", "admin"],
                "unknown scope",
            ),
            (&["keys", "new", "da sh", "--scope", "read"], "bad key name"),
            (
                &["keys", "new", "a", "b", "--scope", "read"],
                "unexpected argument 'b'",
            ),
            (
                &["keys", "new", "a", "--force", "--scope", "read"],
                "unknown option",
            ),
            (&["keys", "check"], "usage"),
            (&["keys", "check", "a", "b"], "usage"),
        ] {
            let e = p(args).unwrap_err();
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }

    #[test]
    fn help_lists_every_variable() {
        let h = help();
        for setting in SETTINGS {
            assert!(h.contains(setting.name), "{}", setting.name);
        }
    }

    #[test]
    fn local_authority_reaches_a_wildcard_bind_over_loopback() {
        assert_eq!(local_authority("0.0.0.0:5000"), "127.0.0.1:5000");
        assert_eq!(local_authority("[::]:80"), "[::1]:80");
        assert_eq!(local_authority("10.0.0.2:5000"), "10.0.0.2:5000");
    }

    #[test]
    fn healthcheck_fails_with_one_line_when_nothing_listens() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (ok, line) = healthcheck(Some(&format!("127.0.0.1:{port}")), None);
        assert!(!ok);
        assert!(
            line.starts_with("unhealthy:") && !line.contains('\n'),
            "{line}"
        );
    }
}
