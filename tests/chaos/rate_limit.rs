//! One address flooding the app with `RATE_LIMIT_PER_SEC=5 RATE_LIMIT_BURST=5`: the burst
//! is served, the rest get 429 with `Retry-After`, health and metrics stay open, and
//! `X-Forwarded-For` picks the bucket only when the peer is a trusted proxy. After each
//! storm the table holds exactly the rows that got 201.
//!
//! Requests are pipelined on one connection, so a storm takes milliseconds and the token
//! bucket's bound (at most `burst + rate x elapsed` admitted) is tight enough to tell one
//! bucket from two.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::*;

const RATE: f64 = 5.0;
const BURST: usize = 5;

fn limited_app(trusted_proxies: Option<&str>) -> TestApp {
    spawn_app_with(|vars| {
        vars.insert("RATE_LIMIT_PER_SEC".into(), RATE.to_string());
        vars.insert("RATE_LIMIT_BURST".into(), BURST.to_string());
        if let Some(t) = trusted_proxies {
            vars.insert("TRUSTED_PROXIES".into(), t.into());
        }
    })
}

/// A storm: create requests written in one go on one connection, each with the given
/// `X-Forwarded-For` (or none), answered in order.
struct Storm {
    attempts: Vec<Attempt>,
    /// From the first byte written to the last answer read.
    elapsed: Duration,
}

impl Storm {
    fn send(addr: SocketAddr, tag: &str, forwarded_for: &[Option<&str>]) -> Storm {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut bytes = Vec::new();
        let mut tokens = Vec::new();
        for (seq, xff) in forwarded_for.iter().enumerate() {
            let token = format!("{tag}-{seq}");
            let body = serde_json::to_vec(&create_body(&token, tag, seq as u64)).unwrap();
            bytes.extend_from_slice(
                b"POST /user HTTP/1.1\r\nHost: storm\r\nContent-Type: application/json\r\n",
            );
            if let Some(xff) = xff {
                bytes.extend_from_slice(format!("X-Forwarded-For: {xff}\r\n").as_bytes());
            }
            bytes.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            bytes.extend_from_slice(&body);
            tokens.push(token);
        }
        let started = Instant::now();
        stream.write_all(&bytes).expect("write the storm");
        let mut reader = BufReader::new(stream);
        let attempts = tokens
            .into_iter()
            .map(|token| {
                let result = read_response(&mut reader, false)
                    .map_err(|error| Failure::Read { bytes: 0, error });
                Attempt {
                    token,
                    started,
                    took: started.elapsed(),
                    result,
                }
            })
            .collect();
        Storm {
            attempts,
            elapsed: started.elapsed(),
        }
    }

    fn statuses(&self) -> Vec<u16> {
        self.attempts
            .iter()
            .map(|a| a.status().unwrap_or_else(|| panic!("{}", a.describe())))
            .collect()
    }

    /// How many were let through.
    fn admitted(&self) -> usize {
        self.statuses().iter().filter(|&&s| s == 201).count()
    }

    /// The most one token bucket can admit during this storm.
    fn one_bucket_bound(&self) -> usize {
        (BURST as f64 + RATE * self.elapsed.as_secs_f64()).floor() as usize
    }

    /// Checks the answers of a storm from one client that started with a full bucket:
    /// the burst first, then only 201 or 429 (with Retry-After), within the bucket's
    /// bound, and at least one 429.
    fn assert_limited(&self, context: &str) {
        let statuses = self.statuses();
        assert!(
            statuses[..BURST].iter().all(|&s| s == 201),
            "{context}: the burst of {BURST} was not served: {statuses:?}"
        );
        for a in &self.attempts {
            let r = a.result.as_ref().expect("checked by statuses");
            match r.status {
                201 => {}
                429 => {
                    let wait = retry_after(r, context);
                    assert!(
                        (1..=2).contains(&wait),
                        "{context}: Retry-After {wait} at {RATE}/s"
                    );
                    assert_error_body(r, context);
                }
                _ => panic!("{context}: {}", a.describe()),
            }
        }
        assert!(
            self.admitted() <= self.one_bucket_bound(),
            "{context}: {} admitted in {:?}, more than {BURST} + {RATE}/s allows: {statuses:?}",
            self.admitted(),
            self.elapsed
        );
        assert!(
            statuses.contains(&429),
            "{context}: no 429 in {} requests over {:?}: {statuses:?}",
            statuses.len(),
            self.elapsed
        );
    }
}

#[test]
fn a_flood_from_one_address_gets_429_with_retry_after_past_the_burst_while_health_stays_open() {
    let _serial = serial();
    let app = limited_app(None);

    // Act: twenty creates at once from one address.
    let storm = Storm::send(app.addr, "flood", &[None; 20]);

    // Assert: the burst, then 429; health, readiness, liveness and metrics still open.
    storm.assert_limited("flood from 127.0.0.1");
    for path in ["/health", "/health/ready", "/health/live", "/metrics"] {
        for _ in 0..3 {
            let r = app.raw("GET", path, &[], None);
            assert_eq!(
                r.status,
                200,
                "{path} while the address is limited: {}",
                r.text()
            );
        }
    }
    // Waiting as long as Retry-After said is enough.
    let wait = storm
        .attempts
        .iter()
        .filter_map(|a| a.result.as_ref().ok().filter(|r| r.status == 429))
        .map(|r| retry_after(r, "flood"))
        .max()
        .expect("a 429");
    let mut after = Storm::send(app.addr, "flood-again", &[None; 20]);
    if after.admitted() == 20 {
        panic!("a second storm was not limited at all");
    }
    std::thread::sleep(Duration::from_secs(wait));
    let retried = Storm::send(app.addr, "retried", &[None]);
    assert_eq!(
        retried.statuses(),
        [201],
        "a create after waiting Retry-After"
    );

    // Assert: rows exactly as the clients were told.
    let (admitted, elapsed) = (storm.admitted(), storm.elapsed);
    let mut attempts = storm.attempts;
    attempts.append(&mut after.attempts);
    attempts.extend(retried.attempts);
    let rows = check_rows(&mut app.db(), &attempts, expect_by_status);
    eprintln!(
        "rate limit: 20 pipelined creates in {elapsed:?}: {admitted} x 201, the rest 429 \
         (Retry-After {wait}); after waiting it, 201; rows {rows:?}"
    );
}

#[test]
fn forwarded_for_from_a_trusted_proxy_gives_each_client_its_own_bucket() {
    let _serial = serial();
    let app = limited_app(Some("127.0.0.1"));

    // Act: client A floods through the proxy; then B, C and the proxy itself ask.
    let a = Storm::send(app.addr, "client-a", &[Some("198.51.100.1"); 20]);
    let b = Storm::send(app.addr, "client-b", &[Some("198.51.100.2"); BURST]);
    let c = Storm::send(
        app.addr,
        "client-c",
        &[Some("203.0.113.9, 127.0.0.1"); BURST],
    );
    let proxy = Storm::send(app.addr, "proxy", &[None; BURST]);

    // Assert: A is limited; each of the others has a full bucket of its own.
    a.assert_limited("client A behind the trusted proxy");
    assert_eq!(b.statuses(), [201; BURST], "client B after A's flood");
    assert_eq!(
        c.statuses(),
        [201; BURST],
        "client C (via two trusted hops)"
    );
    assert_eq!(proxy.statuses(), [201; BURST], "the proxy's own address");
    let attempts: Vec<Attempt> = [a, b, c, proxy]
        .into_iter()
        .flat_map(|s| s.attempts)
        .collect();
    check_rows(&mut app.db(), &attempts, expect_by_status);
}

#[test]
fn forwarded_for_is_ignored_when_the_peer_is_not_a_trusted_proxy() {
    let _serial = serial();
    let app = limited_app(None);

    // Act: twenty creates claiming to come from two addresses, alternately.
    let claims: Vec<Option<&str>> = (0..20)
        .map(|i| {
            Some(if i % 2 == 0 {
                "198.51.100.1"
            } else {
                "198.51.100.2"
            })
        })
        .collect();
    let storm = Storm::send(app.addr, "forged", &claims);

    // Assert: one bucket, the peer's, for both claims.
    storm.assert_limited("X-Forwarded-For from an untrusted peer");
    check_rows(&mut app.db(), &storm.attempts, expect_by_status);
}
