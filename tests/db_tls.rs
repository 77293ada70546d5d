//! TLS to PostgreSQL: every `sslmode` against a real server started with `ssl=on` and
//! certificates this test makes (a CA, a server certificate for `localhost`, a client
//! certificate), connecting or refusing as libpq would.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};
use user_api::Config;
use user_api::db::{Session, WaitError, connect_with_retry};

use common::pg::superuser_password;
use common::{TempDir, TestCluster};

/// The user that logs in with a client certificate (`cert` in pg_hba.conf).
const CERT_USER: &str = "certuser";

/// Certificates made for this test run, as PEM files in a directory of their own.
struct Pki {
    dir: TempDir,
    server_cert: String,
    server_key: String,
    expired_cert: String,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = TempDir::new("tls");
        let write = |name: &str, pem: &str| std::fs::write(dir.path().join(name), pem).unwrap();
        let ca = make_ca("user-api test CA");
        let other_ca = make_ca("some other CA");
        write("ca.pem", &ca.pem());
        write("other-ca.pem", &other_ca.pem());

        // The server's certificate names `localhost` only, so that connecting to
        // 127.0.0.1 is a name mismatch (what verify-full must refuse, verify-ca accept).
        let server_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_cert = params.signed_by(&server_key, &ca).unwrap().pem();

        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.not_before = date_time_ymd(2001, 1, 1);
        params.not_after = date_time_ymd(2002, 1, 1);
        let expired_cert = params.signed_by(&server_key, &ca).unwrap().pem();

        let client_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, CERT_USER);
        write(
            "client.pem",
            &params.signed_by(&client_key, &ca).unwrap().pem(),
        );
        write("client.key", &client_key.serialize_pem());
        // A key that is not the client certificate's.
        write("other.key", &KeyPair::generate().unwrap().serialize_pem());
        Pki {
            dir,
            server_cert,
            server_key: server_key.serialize_pem(),
            expired_cert,
        }
    })
}

/// One cluster with `ssl=on` for the whole binary: password logins over TLS or not,
/// and `certuser` only over TLS with a client certificate.
fn tls_cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let pki = pki();
        let cluster = TestCluster::start_prepared(|data| {
            data.write("server.crt", &pki.server_cert);
            data.write("server.key", &pki.server_key);
            data.write(
                "root.crt",
                std::fs::read(pki.path("ca.pem")).expect("read ca.pem"),
            );
            data.configure(
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
                 ssl_ca_file = 'root.crt'",
            );
            data.write(
                "pg_hba.conf",
                format!(
                    "local all all scram-sha-256\n\
                     hostssl all {CERT_USER} 127.0.0.1/32 cert\n\
                     host all {CERT_USER} 127.0.0.1/32 reject\n\
                     host all all 127.0.0.1/32 scram-sha-256\n"
                ),
            );
        });
        let mut admin = postgres::Client::connect(&cluster.superuser_url(), postgres::NoTls)
            .expect("connect to the TLS cluster");
        admin
            .batch_execute(&format!("CREATE ROLE {CERT_USER} LOGIN"))
            .unwrap();
        cluster
    })
}

fn config(vars: &[(&str, String)]) -> Result<Config, String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Config::from_lookup(move |k| map.get(k).cloned()).map_err(|e| e.to_string())
}

/// `postgres://` URL for `host` on `cluster` with the given query parameters.
fn url(cluster: &TestCluster, user: &str, host: &str, params: &str) -> String {
    let password = if user == CERT_USER {
        String::new()
    } else {
        format!(":{}", superuser_password())
    };
    format!(
        "postgres://{user}{password}@{host}:{}/postgres?{params}",
        cluster.port()
    )
}

/// Connects once (no retries) with `vars`, and reports whether the session is
/// encrypted, or the error chain.
fn connect(vars: &[(&str, String)]) -> Result<bool, String> {
    let mut vars = vars.to_vec();
    vars.push(("DB_CONNECT_TIMEOUT", "0".to_owned()));
    let cfg = config(&vars).map_err(|e| format!("config: {e}"))?;
    match connect_with_retry(&cfg.db, || false) {
        Ok(mut session) => Ok(encrypted(&mut session)),
        Err(WaitError::Database(e)) => Err(user_api::error_chain::chain(&e)),
        Err(WaitError::Stopped) => Err("stopped".into()),
    }
}

fn encrypted(session: &mut Session) -> bool {
    let rows = session
        .simple_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .expect("query pg_stat_ssl");
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v == "t"),
            _ => None,
        })
        .expect("a row from pg_stat_ssl")
}

fn file(name: &str) -> String {
    pki().path(name).display().to_string()
}

/// Connects as `user` to the TLS cluster by `host`, with `params` in the URL.
fn connect_to(user: &str, host: &str, params: &str) -> Result<bool, String> {
    connect(&[("DATABASE_URL", url(tls_cluster(), user, host, params))])
}

/// `sslmode={mode}` with the test PKI's `ca` as the root certificate.
fn rooted(mode: &str, ca: &str) -> String {
    format!("sslmode={mode}&sslrootcert={}", file(ca))
}

fn assert_refused(result: Result<bool, String>, why: &str) {
    match result {
        Err(e) => assert!(e.contains(why), "expected {why:?} in: {e}"),
        Ok(tls) => panic!("connected (tls: {tls}), expected a refusal with {why:?}"),
    }
}

#[test]
fn verify_full_connects_to_the_host_its_certificate_names() {
    let params = rooted("verify-full", "ca.pem");
    assert_eq!(connect_to("postgres", "localhost", &params), Ok(true));
}

#[test]
fn verify_full_refuses_a_host_the_certificate_does_not_name() {
    let params = rooted("verify-full", "ca.pem");
    assert_refused(
        connect_to("postgres", "127.0.0.1", &params),
        "certificate not valid for name",
    );
}

#[test]
fn verify_ca_checks_the_chain_but_not_the_name() {
    let good = rooted("verify-ca", "ca.pem");
    assert_eq!(connect_to("postgres", "127.0.0.1", &good), Ok(true));
    let wrong_ca = rooted("verify-ca", "other-ca.pem");
    assert_refused(
        connect_to("postgres", "localhost", &wrong_ca),
        "UnknownIssuer",
    );
}

#[test]
fn require_encrypts_without_checking_unless_given_a_root_certificate() {
    assert_eq!(
        connect_to("postgres", "127.0.0.1", "sslmode=require"),
        Ok(true)
    );
    // libpq: with a root certificate, `require` verifies the chain like verify-ca.
    let params = rooted("require", "other-ca.pem");
    assert_refused(
        connect_to("postgres", "127.0.0.1", &params),
        "UnknownIssuer",
    );
}

#[test]
fn prefer_and_disable_choose_tls_or_plain_text() {
    // prefer is the default, as in libpq.
    for (params, tls) in [
        ("sslmode=prefer", true),
        ("", true),
        ("sslmode=disable", false),
    ] {
        assert_eq!(
            connect_to("postgres", "127.0.0.1", params),
            Ok(tls),
            "{params:?}"
        );
    }
}

#[test]
fn a_server_without_tls_serves_prefer_in_plain_text_and_refuses_require() {
    // The shared test cluster runs with ssl=off.
    let db = common::fresh_database();
    let plain = |mode: &str| format!("{}?sslmode={mode}", db.url);
    assert_eq!(connect(&[("DATABASE_URL", plain("prefer"))]), Ok(false));
    assert_refused(
        connect(&[("DATABASE_URL", plain("require"))]),
        "server does not support TLS",
    );
}

#[test]
fn the_split_settings_carry_the_same_modes_and_files() {
    let c = tls_cluster();
    let vars = |host: &str, mode: &str| {
        vec![
            ("DB_HOST", host.to_owned()),
            ("DB_PORT", c.port().to_string()),
            ("DB_NAME", "postgres".to_owned()),
            ("DB_USER", "postgres".to_owned()),
            ("DB_PASSWORD", superuser_password().to_owned()),
            ("DB_SSLMODE", mode.to_owned()),
            ("DB_SSLROOTCERT", file("ca.pem")),
        ]
    };
    assert_eq!(connect(&vars("localhost", "verify-full")), Ok(true));
    assert_refused(
        connect(&vars("127.0.0.1", "verify-full")),
        "certificate not valid for name",
    );
    assert_eq!(connect(&vars("127.0.0.1", "verify-ca")), Ok(true));
}

#[test]
fn a_client_certificate_logs_in_where_pg_hba_asks_for_one() {
    let without = rooted("verify-full", "ca.pem");
    let with_cert = format!(
        "{without}&sslcert={}&sslkey={}",
        file("client.pem"),
        file("client.key")
    );
    assert_eq!(connect_to(CERT_USER, "localhost", &with_cert), Ok(true));
    assert_refused(connect_to(CERT_USER, "localhost", &without), "certificate");
}

#[test]
fn channel_binding_is_used_when_required() {
    let over_tls = "sslmode=require&channel_binding=require";
    assert_eq!(connect_to("postgres", "127.0.0.1", over_tls), Ok(true));
    // Without TLS there is nothing to bind to, so `require` must refuse: proof that the
    // successful login above did bind.
    let plain = "sslmode=disable&channel_binding=require";
    assert!(connect_to("postgres", "127.0.0.1", plain).is_err());
}

#[test]
fn bad_tls_settings_stop_start_up_with_one_clear_line() {
    let c = tls_cluster();
    let cases = [
        ("sslmode=verify-everything".to_owned(), "is not one of"),
        ("sslmode=allow".to_owned(), "not supported"),
        ("sslmode=verify-full".to_owned(), "needs a root certificate"),
        (rooted("verify-full", "missing.pem"), "cannot read it"),
        (rooted("verify-full", "client.key"), "no PEM certificate"),
        (
            format!(
                "sslmode=require&sslcert={}&sslkey={}",
                file("client.pem"),
                file("other.key")
            ),
            "is not the key of sslcert",
        ),
        (
            format!("sslmode=require&sslcert={}", file("client.pem")),
            "sslkey is not",
        ),
    ];
    for (params, why) in cases {
        let u = url(c, "postgres", "127.0.0.1", &params);
        let err = config(&[("DATABASE_URL", u)]).expect_err(&params);
        assert!(err.starts_with("DATABASE_URL: "), "{err}");
        assert!(err.contains(why), "{params}: expected {why:?} in {err}");
        assert!(!err.contains(superuser_password()), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let err = config(&[
        ("DB_NAME", "d".to_owned()),
        ("DB_USER", "u".to_owned()),
        ("DB_SSLMODE", "verify-ca".to_owned()),
    ])
    .unwrap_err();
    assert!(err.starts_with("DB_SSLMODE: "), "{err}");
}

#[test]
fn an_expired_server_certificate_is_refused_and_a_renewed_one_accepted() {
    // A cluster of its own: the certificate is swapped under it.
    let pki = pki();
    let cluster = TestCluster::start_prepared(|data| {
        data.write("server.crt", &pki.expired_cert);
        data.write("server.key", &pki.server_key);
        data.configure("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'");
    });
    let u = url(
        &cluster,
        "postgres",
        "localhost",
        &rooted("verify-full", "ca.pem"),
    );
    assert_refused(
        connect(&[("DATABASE_URL", u.clone())]),
        "certificate expired",
    );
    cluster
        .data_dir_files()
        .write("server.crt", &pki.server_cert);
    cluster.reload();
    let ok = common::poll_until(std::time::Duration::from_secs(10), || {
        connect(&[("DATABASE_URL", u.clone())]).ok()
    });
    assert_eq!(ok, Some(true));
}

/// Runs the real binary's `migrate` against the TLS cluster with `params`.
fn migrate(params: &str) -> std::process::Output {
    let c = tls_cluster();
    std::process::Command::new(env!("CARGO_BIN_EXE_user-api"))
        .arg("migrate")
        .env_clear()
        .env("DATABASE_URL", url(c, "postgres", "localhost", params))
        .env("DB_CONNECT_TIMEOUT", "1")
        .current_dir(pki().dir.path())
        .output()
        .expect("run user-api migrate")
}

#[test]
fn the_binary_migrates_over_verified_tls_and_exits_1_naming_a_bad_certificate() {
    let ok = migrate(&rooted("verify-full", "ca.pem"));
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let bad = migrate(&rooted("verify-full", "other-ca.pem"));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("invalid peer certificate"), "{stderr}");
    assert!(!stderr.contains(superuser_password()), "{stderr}");
}
