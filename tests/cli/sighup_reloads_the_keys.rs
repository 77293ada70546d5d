//! SIGHUP reloads `API_KEYS_FILE` without dropping a connection, and a broken file keeps
//! the keys in force.

use std::time::Duration;

use crate::support::*;

/// Writes `contents` to `path` the way an operator should: a new file, then a rename,
/// so the server never reads half a file.
fn replace_file(path: &std::path::Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `serve` with `API_KEYS_FILE` at `file`, logging at `info` (the reloads log there).
fn serve_with_keys_file(db: &common::TestDatabase, file: &std::path::Path) -> ServerProcess {
    ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("API_KEYS_FILE", file.display().to_string()),
        ("LOG_LEVEL", "info".into()),
    ])
}

/// Sends SIGHUP and waits for the log line of the reload (or of its refusal), the
/// `nth` such line since start-up.
fn reload(server: &ServerProcess, nth: usize) -> String {
    signal(&server.child, "HUP");
    let done = poll_until(Duration::from_secs(10), || {
        let stderr = server.stderr();
        (stderr.matches("API keys reloaded").count()
            + stderr.matches("API keys NOT reloaded").count()
            >= nth)
            .then_some(())
    });
    done.unwrap_or_else(|| panic!("no reload logged after SIGHUP: {}", server.stderr()));
    // A refused reload logs its summary first and one line per problem after it: give
    // those lines the moment they take to follow.
    std::thread::sleep(Duration::from_millis(200));
    server.stderr()
}

fn get_users(conn: &mut common::HttpConnection, secret: &str) -> u16 {
    let auth = format!("Bearer {secret}");
    let r = conn
        .send("GET", "/users", &[("Authorization", &auth)], None)
        .expect("the keep-alive connection still answers");
    assert!(
        !r.closes_connection(),
        "the server closed the keep-alive connection"
    );
    r.status
}

/// Whether one line of `log` holds every one of `parts`.
fn has_line_with(log: &str, parts: &[&str]) -> bool {
    log.lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

/// Each `(secret, status)`: `GET /users` with that key on `conn` answers `status`.
fn assert_answers(conn: &mut common::HttpConnection, when: &str, cases: &[(&str, u16)]) {
    for &(secret, status) in cases {
        assert_eq!(get_users(conn, secret), status, "{when}: {secret}");
    }
}

#[test]
fn sighup_rotates_the_keys_with_a_keep_alive_connection_open_across_each_reload() {
    let db = fresh_database();
    let sandbox = Sandbox::new();
    let (old, old_line) = new_key(&sandbox, "dashboard", "read");
    let (new, new_line) = new_key(&sandbox, "dashboard-2", "read");
    let file = sandbox.dir.path().join("api_keys");
    replace_file(&file, &format!("{old_line}\n"));
    let server = serve_with_keys_file(&db, &file);
    let mut conn = common::HttpConnection::open(server.addr).unwrap();
    assert_answers(&mut conn, "before any reload", &[(&old, 200), (&new, 401)]);
    // A rotation: the file in each step, what the reload logs, and what each key gets then.
    let steps = [
        (
            "step 1, the overlap: both lines, both keys work",
            format!("{old_line}\n{new_line}\n"),
            "added: dashboard-2; removed: none",
            [(&old, 200), (&new, 200)],
        ),
        (
            "step 2: the old line goes, and so does the old key",
            format!("{new_line}\n"),
            "added: none; removed: dashboard",
            [(&new, 200), (&old, 401)],
        ),
    ];

    for (n, (step, contents, logged, answers)) in steps.iter().enumerate() {
        replace_file(&file, contents);
        let log = reload(&server, n + 1);

        assert!(log.contains(logged), "{step}: {log}");
        let answers = answers.map(|(secret, status)| (secret.as_str(), status));
        assert_answers(&mut conn, step, &answers);
    }
    let fresh = |secret: &str| {
        let auth = format!("Bearer {secret}");
        server
            .get_with("/users", &[("Authorization", &auth)])
            .unwrap()
            .status
    };
    assert_eq!(
        (fresh(&new), fresh(&old)),
        (200, 401),
        "on a new connection"
    );

    let stderr = server.stderr();
    assert!(
        has_line_with(&stderr, &["\"GET /users\" 200", "key=dashboard-2"]),
        "the access line names the key: {stderr}"
    );
    for secret in [old.as_str(), new.as_str(), &old_line[old_line.len() - 64..]] {
        assert!(!stderr.contains(secret), "the log holds {secret:?}");
    }
}

#[test]
fn sighup_with_a_broken_keys_file_keeps_the_keys_in_force_and_logs_why() {
    let db = fresh_database();
    let sandbox = Sandbox::new();
    let (key, line) = new_key(&sandbox, "dashboard", "read");
    let file = sandbox.dir.path().join("api_keys");
    replace_file(&file, &format!("{line}\n"));
    {
        use std::os::unix::fs::PermissionsExt;
        let world_readable = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(&file, world_readable).unwrap();
    }
    let server = serve_with_keys_file(&db, &file);
    let mut conn = common::HttpConnection::open(server.addr).unwrap();
    assert_eq!(get_users(&mut conn, &key), 200);
    let stderr = server.stderr();
    assert!(
        has_line_with(&stderr, &["WARN", "readable by every user (mode 0644)"]),
        "a world-readable keys file is worth a warning at start-up: {stderr}"
    );

    replace_file(&file, &format!("{line}\nintruder admin sha256:00\n"));
    let log = reload(&server, 1);

    assert!(
        log.contains("API keys NOT reloaded, keeping the 1 in force"),
        "{log}"
    );
    assert!(log.contains("api_keys:2: unknown scope \"admin\""), "{log}");
    assert_eq!(get_users(&mut conn, &key), 200, "the old key still works");

    std::fs::remove_file(&file).unwrap();
    let log = reload(&server, 2);
    assert!(log.contains("cannot read"), "{log}");
    assert_eq!(
        get_users(&mut conn, &key),
        200,
        "a missing file changes nothing either"
    );
}
