//! The command line: commands, `--help`, and the `healthcheck` client, which uses only
//! the standard library because a `FROM scratch` image has no curl.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::VARIABLES;
use crate::startup::VERSION;

#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Serve,
    Migrate,
    Healthcheck(Option<String>),
    Help,
    Version,
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
        ["-h" | "--help" | "help", ..] => Ok(Command::Help),
        ["-V" | "--version", ..] => Ok(Command::Version),
        [cmd, ..] if cmd.starts_with('-') => Err(format!("unknown option '{cmd}'")),
        ["serve" | "migrate" | "healthcheck", extra, ..] => {
            Err(format!("unexpected argument '{extra}'"))
        }
        [cmd, ..] => Err(format!("unknown command '{cmd}'")),
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
         healthcheck [URL]  GET /health on BIND (or URL); exit 0 on 200, else 1\n\n\
         Options:\n  -h, --help         print this help\n  -V, --version      print the version\n\n\
         Environment (a .env file in the working directory is read first; real variables win):\n"
    );
    for (name, default, what) in VARIABLES {
        s.push_str(&format!("  {name:<24}{what} [default: {default}]\n"));
    }
    s
}

/// `user-api healthcheck`: prints one line; exit 0 when healthy, else 1.
pub fn run_healthcheck(url: Option<&str>, bind: Option<&str>) -> ExitCode {
    let (ok, line) = healthcheck(url, bind);
    println!("{line}");
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the health check and returns whether it passed, with one line to print.
pub fn healthcheck(url: Option<&str>, bind: Option<&str>) -> (bool, String) {
    let (authority, path) = match url {
        Some(u) => {
            let rest = u.strip_prefix("http://").unwrap_or(u);
            match rest.find('/') {
                Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
                None => (rest.to_owned(), "/health".to_owned()),
            }
        }
        None => (
            local_authority(bind.unwrap_or("0.0.0.0:5000")),
            "/health".to_owned(),
        ),
    };
    match probe(&authority, &path) {
        Ok(200) => (true, format!("healthy: 200 from http://{authority}{path}")),
        Ok(status) => (
            false,
            format!("unhealthy: {status} from http://{authority}{path}"),
        ),
        Err(e) => (false, format!("unhealthy: http://{authority}{path}: {e}")),
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

fn probe(authority: &str, path: &str) -> std::io::Result<u16> {
    let timeout = Duration::from_secs(3);
    let addr = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("address resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
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
    }

    #[test]
    fn help_lists_every_variable() {
        let h = help();
        for (name, _, _) in VARIABLES {
            assert!(h.contains(name), "{name}");
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
