//! SIGHUP reloads `API_KEYS_FILE` without dropping a connection, and a broken file keeps
//! the keys in force.

use std::process::Child;
use std::process::Command;
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

fn sighup(child: &Child) {
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -HUP {}", child.id());
}

/// Sends SIGHUP and waits for the log line of the reload (or of its refusal), the
/// `nth` such line since start-up.
fn reload(server: &ServerProcess, nth: usize) -> String {
    sighup(&server.child);
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

#[test]
fn sighup_rotates_the_keys_with_a_keep_alive_connection_open_across_each_reload() {
    let db = fresh_database();
    let sandbox = Sandbox::new();
    let (old, old_line) = new_key(&sandbox, "dashboard", "read");
    let (new, new_line) = new_key(&sandbox, "dashboard-2", "read");
    let file = sandbox.dir.path().join("api_keys");
    replace_file(&file, &format!("{old_line}\n"));
    let server = ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("API_KEYS_FILE", file.display().to_string()),
        ("LOG_LEVEL", "info".into()),
    ]);
    let mut conn = common::HttpConnection::open(server.addr).unwrap();
    assert_eq!(get_users(&mut conn, &old), 200);
    assert_eq!(get_users(&mut conn, &new), 401);

    // Step 1 of a rotation: both lines, both work.
    replace_file(&file, &format!("{old_line}\n{new_line}\n"));
    let log = reload(&server, 1);
    assert!(log.contains("added: dashboard-2; removed: none"), "{log}");
    assert_eq!(
        get_users(&mut conn, &old),
        200,
        "the old key, during the overlap"
    );
    assert_eq!(
        get_users(&mut conn, &new),
        200,
        "the new key, during the overlap"
    );

    // Step 2: the old line goes, and so does the old key.
    replace_file(&file, &format!("{new_line}\n"));
    let log = reload(&server, 2);
    assert!(log.contains("added: none; removed: dashboard"), "{log}");
    assert_eq!(
        get_users(&mut conn, &new),
        200,
        "the new key, after the reload"
    );
    assert_eq!(
        get_users(&mut conn, &old),
        401,
        "the removed key, after the reload"
    );
    let fresh = |secret: &str| {
        let auth = format!("Bearer {secret}");
        common::client::send(
            server.addr,
            "GET",
            "/users",
            &[("Authorization", &auth)],
            None,
        )
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
        stderr
            .lines()
            .any(|l| l.contains("\"GET /users\" 200") && l.contains("key=dashboard-2")),
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
    let server = ServerProcess::start(&[
        ("DATABASE_URL", db.url.clone()),
        ("API_KEYS_FILE", file.display().to_string()),
        ("LOG_LEVEL", "info".into()),
    ]);
    let mut conn = common::HttpConnection::open(server.addr).unwrap();
    assert_eq!(get_users(&mut conn, &key), 200);
    let stderr = server.stderr();
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("WARN") && l.contains("readable by every user (mode 0644)")),
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
