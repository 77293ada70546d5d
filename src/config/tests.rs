//! Unit tests of reading the configuration, and the test that holds the docs to the
//! settings table.

use std::collections::HashMap;
use std::time::Duration;

use log::LevelFilter;

use super::settings::SETTINGS;
use super::*;
use crate::db::StatementCache;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(move |k| map.get(k).cloned())
}

const BASE: &[(&str, &str)] = &[("DB_NAME", "app"), ("DB_USER", "app")];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    BASE.iter().chain(extra).copied().collect()
}

#[test]
fn config_has_documented_defaults_when_only_required_vars_are_set() {
    let c = config(BASE).unwrap();
    assert_eq!(c.bind.to_string(), "0.0.0.0:5000");
    assert_eq!(c.server.workers, 16);
    assert_eq!(c.db.pool_size, 16);
    assert_eq!(c.db.pool_timeout, Duration::from_millis(1000));
    assert_eq!(c.db.connect_timeout, Duration::from_secs(30));
    assert_eq!(c.server.max_body_bytes, 65_536);
    assert_eq!(c.log_level, LevelFilter::Info);
    assert_eq!(c.db.primary.pg.get_ports(), &[5432]);
    assert_eq!(c.db.primary.pg.get_application_name(), Some("user-api"));
    assert!(c.api_keys.is_none());
    assert!(c.rate_limit.is_none());
    assert_eq!(c.admin_path.as_ref().map(AdminPath::as_str), Some("/admin"));
    let c = config(&with(&[("RATE_LIMIT_PER_SEC", "5")])).unwrap();
    assert_eq!(
        c.rate_limit,
        Some(RateLimit {
            per_second: 5.0,
            burst: 10.0
        })
    );
}

#[test]
fn query_timeout_follows_the_statement_timeout_unless_set() {
    let ms = |vars: &[(&'static str, &'static str)]| {
        config(&with(vars)).unwrap().db.query_timeout.as_millis()
    };
    assert_eq!(ms(&[]), 5_500);
    assert_eq!(ms(&[("DB_STATEMENT_TIMEOUT_MS", "1000")]), 1_500);
    assert_eq!(ms(&[("DB_STATEMENT_TIMEOUT_MS", "0")]), 5_500);
    let set = [
        ("DB_STATEMENT_TIMEOUT_MS", "1000"),
        ("DB_QUERY_TIMEOUT_MS", "250"),
    ];
    assert_eq!(ms(&set), 250);
    let e = config(&with(&[("DB_QUERY_TIMEOUT_MS", "0")])).unwrap_err();
    assert!(e.to_string().starts_with("DB_QUERY_TIMEOUT_MS: "), "{e}");
}

#[test]
fn statements_are_cached_unless_the_cache_is_turned_off() {
    let cache =
        |vars: &[(&'static str, &'static str)]| config(&with(vars)).unwrap().db.statement_cache;
    assert_eq!(cache(&[]), StatementCache::On);
    assert_eq!(cache(&[("DB_STATEMENT_CACHE", "on")]), StatementCache::On);
    assert_eq!(cache(&[("DB_STATEMENT_CACHE", "off")]), StatementCache::Off);
    assert_eq!(cache(&[("DB_STATEMENT_CACHE", "OFF")]), StatementCache::Off);
}

#[test]
fn config_fails_naming_the_variable_when_a_value_is_bad() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("DB_PORT", "abc")], "DB_PORT"),
        (&[("DB_PORT", "70000")], "DB_PORT"),
        (&[("WORKERS", "0")], "WORKERS"),
        (&[("BIND", "nowhere")], "BIND"),
        (&[("LOG_LEVEL", "loud")], "LOG_LEVEL"),
        (&[("DB_POOL_TIMEOUT_MS", "-5")], "DB_POOL_TIMEOUT_MS"),
        (&[("DB_STATEMENT_CACHE", "sometimes")], "DB_STATEMENT_CACHE"),
        (
            &[("DB_PASSWORD_FILE", "/nonexistent/pw")],
            "DB_PASSWORD_FILE",
        ),
        (
            &[("DB_PASSWORD", "a"), ("DB_PASSWORD_FILE", "/x")],
            "DB_PASSWORD",
        ),
        (&[("API_TOKEN", "a"), ("API_TOKEN_FILE", "/x")], "API_TOKEN"),
        (&[("RATE_LIMIT_PER_SEC", "fast")], "RATE_LIMIT_PER_SEC"),
        (
            &[("RATE_LIMIT_PER_SEC", "5"), ("RATE_LIMIT_BURST", "0")],
            "RATE_LIMIT_BURST",
        ),
        (&[("TRUSTED_PROXIES", "10.0.0.0/99")], "TRUSTED_PROXIES"),
        (&[("ADMIN_PATH", "admin")], "ADMIN_PATH"),
        (&[("ADMIN_PATH", "/users/admin")], "ADMIN_PATH"),
    ];
    for (extra, var) in cases {
        let e = config(&with(extra)).unwrap_err();
        assert_eq!(e.var, *var, "{extra:?}");
    }
    assert_eq!(config(&[("DB_USER", "u")]).unwrap_err().var, "DB_NAME");
}

#[test]
fn config_errors_never_echo_secrets() {
    let e = config(&with(&[
        ("DB_PASSWORD", "hunter2"),
        ("DB_PASSWORD_FILE", "/x"),
    ]))
    .unwrap_err();
    assert!(!e.to_string().contains("hunter2"));
    let e = config(&[("DATABASE_URL", "postgres://u:hunter2@h:bad/db")]).unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let c = config(&with(&[("DB_PASSWORD", "hunter2"), ("API_TOKEN", "tok3n")])).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2") && !dbg.contains("tok3n"), "{dbg}");
}

#[test]
fn https_comes_from_the_tls_credentials_only_when_both_are_there() {
    let dir = std::env::temp_dir().join(format!("user-api-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("tls_cert"), c.cert.pem()).unwrap();
    let dir_s = dir.to_str().unwrap().to_owned();
    let build = || {
        let dir_s = dir_s.clone();
        Config::from_lookup(move |k| match k {
            "DB_NAME" | "DB_USER" => Some("app".into()),
            "CREDENTIALS_DIRECTORY" => Some(dir_s.clone()),
            _ => None,
        })
        .unwrap()
    };
    assert!(build().https.is_none(), "tls_cert alone turned HTTPS on");
    std::fs::write(dir.join("tls_key"), c.signing_key.serialize_pem()).unwrap();
    let https = build().https.expect("both credentials turn HTTPS on");
    assert_eq!(https.cert_file(), dir.join("tls_cert"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_reads_secrets_from_files_without_the_trailing_newline() {
    let dir = std::env::temp_dir().join(format!("user-api-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    std::fs::write(dir.join("api_token"), "tok\r\n").unwrap();
    let pw = pw.to_str().unwrap().to_owned();
    let dir_s = dir.to_str().unwrap().to_owned();
    let c = Config::from_lookup(move |k| match k {
        "DB_NAME" | "DB_USER" => Some("app".into()),
        "DB_PASSWORD_FILE" => Some(pw.clone()),
        "CREDENTIALS_DIRECTORY" => Some(dir_s.clone()),
        _ => None,
    })
    .unwrap();
    assert_eq!(c.db.primary.pg.get_password(), Some(&b"s3cret"[..]));
    let keys = c.api_keys.unwrap().current();
    assert_eq!(keys.find("tok").map(|k| k.name()), Some("api-token"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn config_reads_api_keys_file_and_refuses_it_beside_a_token() {
    let dir = std::env::temp_dir().join(format!("user-api-keys-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("keys");
    let hash = crate::keys::secret::format_hash(&crate::keys::secret::digest("s"));
    std::fs::write(&good, format!("dash read {hash}\n")).unwrap();
    let bad = dir.join("bad");
    std::fs::write(&bad, "dash admin sha256:00\nx read sha256:00\n").unwrap();
    let (good, bad) = (good.display().to_string(), bad.display().to_string());
    let with = |extra: &[(&'static str, &str)]| -> Vec<(&str, String)> {
        BASE.iter()
            .chain(extra)
            .map(|(k, v)| (*k, v.to_string()))
            .collect()
    };
    let config = |vars: Vec<(&str, String)>| {
        let map: HashMap<String, String> =
            vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Config::from_lookup(move |k| map.get(k).cloned())
    };
    let c = config(with(&[("API_KEYS_FILE", &good)])).unwrap();
    let keys = c.api_keys.unwrap().current();
    assert_eq!(keys.find("s").map(|k| k.name()), Some("dash"));
    let e = config(with(&[("API_KEYS_FILE", &bad)])).unwrap_err();
    assert_eq!(e.var, "API_KEYS_FILE");
    assert!(e.msg.contains(":1: unknown scope"), "{e}");
    assert!(e.msg.contains("and 1 more"), "{e}");
    for token in [("API_TOKEN", "t"), ("API_TOKEN_FILE", good.as_str())] {
        let e = config(with(&[("API_KEYS_FILE", &good), token])).unwrap_err();
        assert_eq!(e.var, "API_KEYS_FILE", "{token:?}");
        assert!(e.msg.contains("not both"), "{e}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn config_takes_database_url_and_treats_empty_values_as_unset() {
    let c = config(&[
        ("DATABASE_URL", "postgres://u:p@127.0.0.1:6543/d"),
        ("API_TOKEN", ""),
        ("WORKERS", "3"),
    ])
    .unwrap();
    assert_eq!(c.db.primary.pg.get_ports(), &[6543]);
    assert_eq!(c.db.primary.pg.get_dbname(), Some("d"));
    assert_eq!(c.db.pool_size, 3);
    assert!(c.api_keys.is_none());
    assert_eq!(c.db.primary.pg.get_hostaddrs().len(), 1);
}

#[test]
fn a_password_inside_database_url_wins_over_db_password() {
    let url = "postgres://u:from-url@127.0.0.1:6543/d";
    let c = config(&[("DATABASE_URL", url), ("DB_PASSWORD", "change-me")]).unwrap();
    assert_eq!(c.db.primary.pg.get_password(), Some(&b"from-url"[..]));
    // and a URL without one takes the separate variable
    let url = "postgres://u@127.0.0.1:6543/d";
    let c = config(&[("DATABASE_URL", url), ("DB_PASSWORD", "sep")]).unwrap();
    assert_eq!(c.db.primary.pg.get_password(), Some(&b"sep"[..]));
}

#[test]
fn a_bad_bind_says_that_host_and_port_are_expected() {
    let e = config(&with(&[("BIND", "nonsense")])).unwrap_err();
    assert_eq!(e.var, "BIND");
    assert!(e.to_string().contains("host:port"), "{e}");
}

#[test]
fn config_reads_a_replica_with_the_primarys_credentials() {
    let c = config(&with(&[
        ("DB_PASSWORD", "pw"),
        ("DB_READ_HOST", "10.0.0.9"),
    ]))
    .unwrap();
    let r = c.db.replica.unwrap().pg;
    assert_eq!(
        r.get_hostaddrs(),
        &["10.0.0.9".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!((r.get_dbname(), r.get_user()), (Some("app"), Some("app")));
    assert_eq!(r.get_password(), Some(&b"pw"[..]));
    assert_eq!(r.get_ports(), &[5432]);
    let c = config(&[
        ("DATABASE_URL", "postgres://u:p@127.0.0.1/d"),
        ("DATABASE_READ_URL", "postgres://u@127.0.0.2:5433/d"),
    ])
    .unwrap();
    let r = c.db.replica.unwrap().pg;
    assert_eq!(
        (r.get_ports(), r.get_password()),
        (&[5433][..], Some(&b"p"[..]))
    );
    assert!(config(BASE).unwrap().db.replica.is_none());
}

#[test]
fn admin_path_is_moved_by_a_path_and_turned_off_by_off() {
    let path = |v: &'static str| config(&with(&[("ADMIN_PATH", v)])).unwrap().admin_path;
    assert_eq!(path("/ops/console").unwrap().as_str(), "/ops/console");
    assert_eq!(path("OFF"), None);
    assert_eq!(path("").unwrap().as_str(), "/admin");
}

#[test]
fn settings_table_lists_each_name_once() {
    let mut names: Vec<_> = settings::names().collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), SETTINGS.len());
}

#[test]
fn the_service_reads_exactly_the_declared_settings() {
    // Between them these environments take every branch that reads a variable: the
    // DB_* path with a replica by host, and a rate limit (which reads the burst).
    let envs: &[&[(&str, &str)]] = &[
        &[
            ("DB_NAME", "app"),
            ("DB_USER", "app"),
            ("DB_READ_HOST", "10.0.0.9"),
            ("RATE_LIMIT_PER_SEC", "5"),
        ],
        &[
            ("DATABASE_URL", "postgres://u@127.0.0.1/d"),
            ("DATABASE_READ_URL", "postgres://u@127.0.0.2/d"),
        ],
    ];
    let read = std::cell::RefCell::new(std::collections::BTreeSet::new());
    for vars in envs {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        Config::from_lookup(|name| {
            read.borrow_mut().insert(name.to_owned());
            map.get(name).map(|v| v.to_string())
        })
        .unwrap();
    }
    let mut read = read.into_inner();
    // systemd's, not ours: where credentials are, when it passes any.
    read.remove("CREDENTIALS_DIRECTORY");
    let declared: std::collections::BTreeSet<String> =
        settings::names().map(str::to_owned).collect();
    let undeclared: Vec<_> = read.difference(&declared).collect();
    let unread: Vec<_> = declared.difference(&read).collect();
    assert!(
        undeclared.is_empty(),
        "read but not declared: {undeclared:?}"
    );
    assert!(unread.is_empty(), "declared but never read: {unread:?}");
}

#[test]
fn server_config_defaults_are_the_declared_ones() {
    let from_env = config(BASE).unwrap().server;
    let default = ServerConfig::default();
    assert_eq!(format!("{default:?}"), format!("{from_env:?}"));
    assert_eq!(default.workers, 16);
    assert_eq!(default.max_connections_per_peer, 5_000);
}

#[test]
fn every_number_setting_takes_its_declared_range_and_refuses_past_it() {
    for setting in SETTINGS {
        let settings::Parse::Number { min, max } = setting.parse else {
            continue;
        };
        let vars = |value: String| -> Vec<(String, String)> {
            [
                ("DB_NAME", "app"),
                ("DB_USER", "app"),
                ("DB_READ_HOST", "10.0.0.9"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([(setting.name.to_owned(), value)])
            .collect()
        };
        let build = |value: String| {
            let map: HashMap<String, String> = vars(value).into_iter().collect();
            Config::from_lookup(move |k| map.get(k).cloned())
        };
        for ok in [min, max] {
            if let Err(e) = build(ok.to_string()) {
                panic!("{}={ok} refused: {e}", setting.name);
            }
        }
        let e = build((u128::from(max) + 1).to_string()).unwrap_err();
        assert_eq!(e.var, setting.name, "{e}");
    }
}

#[test]
fn every_declared_word_is_accepted_and_the_default_is_one_of_them() {
    for setting in SETTINGS {
        let settings::Parse::Word(words) = setting.parse else {
            continue;
        };
        if let settings::Default::Text(default) = setting.default {
            assert!(words.contains(&default), "{}", setting.name);
        }
        for word in words {
            // verify-ca/verify-full may still fail for want of a CA: not for the word.
            if let Err(e) = config(&with(&[(setting.name, word)])) {
                assert!(
                    !e.msg.contains("is not one of"),
                    "{}={word}: {e}",
                    setting.name
                );
            }
        }
        let e = config(&with(&[(setting.name, "sometimes")])).unwrap_err();
        assert_eq!(e.var, setting.name, "{e}");
    }
}

#[test]
fn no_secret_setting_shows_in_the_configuration() {
    for (i, setting) in SETTINGS.iter().filter(|s| s.secret).enumerate() {
        let sentinel = format!("sentinel-{i}-7731");
        let value = if setting.name.ends_with("_URL") {
            format!("postgres://u:{sentinel}@127.0.0.1/d")
        } else {
            sentinel.clone()
        };
        let map: HashMap<String, String> = BASE
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([(setting.name.to_owned(), value)])
            .collect();
        let c = Config::from_lookup(move |k| map.get(k).cloned()).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains(&sentinel), "{}: {shown}", setting.name);
    }
}

#[test]
fn a_setting_at_its_maximum_never_fails_one_left_unset() {
    let c = config(&with(&[("DB_STATEMENT_TIMEOUT_MS", "86400000")])).unwrap();
    assert_eq!(c.db.query_timeout, Duration::from_millis(86_400_500));
    let c = config(&with(&[("RATE_LIMIT_PER_SEC", "1000000000")])).unwrap();
    assert_eq!(c.rate_limit.map(|l| l.burst), Some(2e9));
}
