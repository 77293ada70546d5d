//! Prepared statements: each pooled connection prepares a statement once and reuses it
//! (`DB_STATEMENT_CACHE=on`, the default), or sends every statement unnamed (`off`, for
//! PgBouncer in transaction mode); and a schema change under cached plans costs no request.

use std::str::FromStr;
use std::time::Duration;

use user_api::db::tls::{Connector, TlsSettings};
use user_api::db::{Endpoint, Session, StatementCache, users};
use user_api::domain::UserId;

use crate::helpers::*;

/// The statements this session holds prepared, as the server counts them.
fn prepared_on_the_server(session: &mut Session) -> i64 {
    let rows = session
        .query_typed("SELECT count(*) FROM pg_prepared_statements", &[])
        .expect("count the prepared statements");
    rows[0].get(0)
}

fn session(app: &TestApp, cache: StatementCache) -> Session {
    let pg = tokio_postgres::Config::from_str(&app.db_url).expect("the test database URL");
    let tls = Connector::new(&TlsSettings::default()).expect("a TLS connector");
    Session::connect(&Endpoint { pg, tls }, Duration::from_secs(10), cache)
        .expect("connect to the test database")
}

/// Looks one user up three times on a session of its own with `cache`; returns how many
/// named statements the server then holds for that session.
fn prepared_after_three_lookups(cache: StatementCache) -> i64 {
    let app = spawn_app();
    let id = UserId::parse(&app.create_named("Ada", "Lovelace", None).to_string()).expect("an id");
    let mut s = session(&app, cache);

    for _ in 0..3 {
        let user = users::get(&mut s, id).expect("get the user");
        assert!(user.is_some(), "the user is found");
    }

    prepared_on_the_server(&mut s)
}

#[test]
fn with_the_cache_on_a_session_prepares_each_statement_once_and_reuses_it() {
    // The lookup, prepared once for three runs, and the count itself.
    assert_eq!(prepared_after_three_lookups(StatementCache::On), 2);
}

#[test]
fn with_the_cache_off_a_session_prepares_no_named_statement() {
    assert_eq!(prepared_after_three_lookups(StatementCache::Off), 0);
}

/// Every route that runs a statement, once: after the first round each of the pool's one
/// connection's statements is prepared.
fn use_every_statement(app: &TestApp, id: i64, round: &str) -> i64 {
    let r = app.get_user(id);
    assert_eq!(r.status, 200, "{round}: GET: {}", r.text());
    let r = app.list_users("limit=10");
    assert_eq!(r.status, 200, "{round}: list: {}", r.text());
    let r = app.list_users("limit=10&email=ada@example.com");
    assert_eq!(r.status, 200, "{round}: list by email: {}", r.text());
    let body = json!({"first_name": "Grace", "last_name": "Hopper", "email": null});
    let r = app.put_user(id, &body);
    assert_eq!(r.status, 200, "{round}: PUT: {}", r.text());
    let r = app.patch_user(id, &json!({"first_name": "Ada"}));
    assert_eq!(r.status, 200, "{round}: PATCH: {}", r.text());
    let r = app.create_user(&json!({"first_name": "Alan", "last_name": "Turing", "email": null}));
    assert_eq!(r.status, 201, "{round}: POST: {}", r.text());
    let created = id_of(&r.json());
    let r = app.delete_user(created);
    assert_eq!(r.status, 204, "{round}: DELETE: {}", r.text());
    created
}

#[test]
fn a_schema_change_under_cached_plans_costs_no_request() {
    // One connection, so the requests after the change meet the plans cached before it.
    let app = spawn_app_with(|v| {
        v.insert("WORKERS".into(), "1".into());
        v.insert("DB_POOL_SIZE".into(), "1".into());
    });
    let id = app.create_named("Ada", "Lovelace", Some("ada@example.com"));
    use_every_statement(&app, id, "before");

    // A new column leaves our statements' results as they were; a column whose type
    // changes does not ("cached plan must not change result type").
    app.db()
        .batch_execute(
            "ALTER TABLE users ADD COLUMN nickname text;
             ALTER TABLE users ALTER COLUMN first_name TYPE varchar(200);
             ALTER TABLE users ALTER COLUMN last_name TYPE varchar(200)",
        )
        .expect("alter the table");
    use_every_statement(&app, id, "after");

    // Each write ran once: only the two users created and deleted came and went.
    let count: i64 = app
        .db()
        .query_one("SELECT count(*) FROM users", &[])
        .expect("count the users")
        .get(0);
    assert_eq!(count, 1);
}
