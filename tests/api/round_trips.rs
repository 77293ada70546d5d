//! What a request costs the database, counted on the wire: the app talks to PostgreSQL
//! through a proxy that counts the round trips it starts (extended-protocol `Sync`s and
//! simple `Query`s). A request without `If-Match`, `If-None-Match` or `Idempotency-Key`
//! must cost the one round trip it always did; the new headers may cost more only when
//! they are sent. The app runs with `DB_STATEMENT_CACHE=off`, where every statement is
//! one round trip; with the cache on (the default) a statement's first run on each pooled
//! connection adds one more, to prepare it, which would make the counts depend on which
//! connection a request happens to get.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::helpers::*;

/// Forwards every connection to `upstream`, counting the client's round trips.
struct CountingProxy {
    addr: SocketAddr,
    round_trips: Arc<AtomicUsize>,
}

impl CountingProxy {
    fn start(upstream: SocketAddr) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let round_trips = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&round_trips);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (client_rx, server_tx) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || copy(server, client));
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || count_and_forward(client_rx, server_tx, &counter));
            }
        });
        CountingProxy { addr, round_trips }
    }

    fn count(&self) -> usize {
        self.round_trips.load(Ordering::SeqCst)
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// Frontend messages: untyped start-up ones (length first) until the first typed one,
/// then a type byte and a length. `S` (Sync) ends an extended-protocol exchange, `Q` is
/// a simple query: each is one round trip.
fn count_and_forward(mut from: TcpStream, mut to: TcpStream, counter: &AtomicUsize) {
    let mut started = false;
    loop {
        let mut kind = [0u8; 1];
        if started && from.read_exact(&mut kind).is_err() {
            break;
        }
        let mut len = [0u8; 4];
        if from.read_exact(&mut len).is_err() {
            break;
        }
        let len = u32::from_be_bytes(len) as usize;
        let mut rest = vec![0u8; len.saturating_sub(4)];
        if from.read_exact(&mut rest).is_err() {
            break;
        }
        // A start-up message (protocol 3.0) ends the untyped part; an SSLRequest does not.
        let untyped_startup = !started && rest.get(..4) == Some(&[0, 3, 0, 0]);
        if started && matches!(kind[0], b'S' | b'Q') {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        let mut frame = Vec::with_capacity(len + 1);
        if started {
            frame.push(kind[0]);
        }
        frame.extend_from_slice(&(len as u32).to_be_bytes());
        frame.extend_from_slice(&rest);
        if to.write_all(&frame).is_err() {
            break;
        }
        started |= untyped_startup;
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// The app, connected to its database through a counting proxy.
fn spawn_counted() -> (TestApp, CountingProxy) {
    let mut proxy = None;
    let app = spawn_app_with(|vars| {
        vars.insert("DB_STATEMENT_CACHE".into(), "off".into());
        let url = vars["DATABASE_URL"].clone();
        let pg = postgres::Config::from_str(&url).expect("a database URL");
        let port = pg.get_ports()[0];
        let upstream = SocketAddr::from(([127, 0, 0, 1], port));
        let p = CountingProxy::start(upstream);
        let proxied = url.replacen(&format!(":{port}/"), &format!(":{}/", p.addr.port()), 1);
        assert_ne!(proxied, url, "the URL names the port");
        vars.insert("DATABASE_URL".into(), proxied);
        proxy = Some(p);
    });
    (app, proxy.expect("the proxy started"))
}

/// Round trips to the database while `request` runs.
fn cost(proxy: &CountingProxy, request: impl FnOnce() -> HttpResponse) -> (u16, usize) {
    let before = proxy.count();
    let status = request().status;
    (status, proxy.count() - before)
}

#[test]
fn requests_without_the_new_headers_cost_one_round_trip_as_before() {
    let (app, proxy) = spawn_counted();
    wait_for_idle_connections(app.addr, 4.0);
    let id = app.create_named("Grace", "Hopper", None);

    let target = format!("/user/{id}");
    let cases: Vec<(&str, (u16, usize))> = vec![
        ("POST", cost(&proxy, || app.create_user(&ada()))),
        ("GET", cost(&proxy, || app.get_user(id))),
        (
            "HEAD",
            cost(&proxy, || app.request("HEAD", &target, &[], None)),
        ),
        (
            "PUT",
            cost(&proxy, || {
                app.put_user(id, &json!({"first_name": "G", "last_name": "H"}))
            }),
        ),
        (
            "PATCH",
            cost(&proxy, || {
                app.patch_user(id, &json!({"last_name": "Hopper"}))
            }),
        ),
        ("GET /users", cost(&proxy, || app.list_users("limit=10"))),
        ("DELETE", cost(&proxy, || app.delete_user(id))),
    ];

    for (what, (status, trips)) in cases {
        assert!((200..300).contains(&status), "{what}: {status}");
        assert_eq!(trips, 1, "{what} costs one round trip");
    }
}

#[test]
fn a_conditional_write_costs_one_round_trip_and_a_keyed_one_a_transaction() {
    let (app, proxy) = spawn_counted();
    wait_for_idle_connections(app.addr, 4.0);
    let created = app.create_user(&ada());
    let id = id_of(&created.json());
    let tag = created.header("etag").expect("an ETag").to_owned();
    let body = serde_json::to_vec(&json!({"last_name": "King"})).unwrap();
    let target = format!("/user/{id}");

    let (status, trips) = cost(&proxy, || {
        let headers = [
            ("Content-Type", "application/json"),
            ("If-Match", tag.as_str()),
        ];
        app.request("PATCH", &target, &headers, Some(&body))
    });
    assert_eq!((status, trips), (200, 1), "a PATCH with If-Match");
    let (status, trips) = cost(&proxy, || {
        app.request("GET", &target, &[("If-None-Match", "*")], None)
    });
    assert_eq!((status, trips), (304, 1), "a GET with If-None-Match");

    let keyed = || {
        let headers = [
            ("Content-Type", "application/json"),
            ("Idempotency-Key", "k"),
        ];
        app.request("PATCH", &target, &headers, Some(&body))
    };
    assert_eq!(
        cost(&proxy, keyed),
        (200, 6),
        "BEGIN, lock, lookup, write, store, COMMIT"
    );
    assert_eq!(
        cost(&proxy, keyed),
        (200, 4),
        "a replay: BEGIN, lock, lookup, ROLLBACK"
    );
}
