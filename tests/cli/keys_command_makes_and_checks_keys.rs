//! `user-api keys new` and `user-api keys check`: fresh secrets with their keys-file lines,
//! and one line per problem in a keys file.

use std::process::Command;
use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

/// SHA-256 in hex by coreutils' `sha256sum`, not by the code under test.
fn sha256sum(text: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

#[test]
fn keys_new_prints_a_fresh_secret_then_its_line_with_the_secrets_sha256() {
    let sandbox = Sandbox::new();

    let (secret, line) = new_key(&sandbox, "dashboard", "read");
    let (other, both) = new_key(&sandbox, "provisioning", "read,write");

    let hex = secret
        .strip_prefix("uak_")
        .expect("the secret has its prefix");
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "256 bits in hex: {secret}"
    );
    assert_ne!(secret, other, "each secret is new");
    assert_eq!(
        line,
        format!("dashboard read sha256:{}", sha256sum(&secret))
    );
    assert_eq!(
        both,
        format!("provisioning read,write sha256:{}", sha256sum(&other))
    );
}

#[test]
fn keys_new_refuses_a_bad_name_or_scope_with_exit_2() {
    let sandbox = Sandbox::new();
    for args in [
        &["keys", "new", "dash board", "--scope", "read"][..],
        &["keys", "new", "dash", "--scope", "admin"],
        &["keys", "new", "dash"],
        &["keys", "new"],
        &["keys", "frobnicate"],
    ] {
        let run = sandbox.run(args, &[], Duration::from_secs(10));

        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", run.describe());
        assert!(
            run.stdout.is_empty(),
            "{args:?}: no secret printed: {}",
            run.describe()
        );
        assert_eq!(
            run.stderr.lines().count(),
            1,
            "{args:?}: {}",
            run.describe()
        );
    }
}

#[test]
fn keys_check_exits_0_for_a_sound_file_and_2_with_one_line_per_problem() {
    use std::os::unix::fs::PermissionsExt;
    let sandbox = Sandbox::new();
    let (_, line) = new_key(&sandbox, "dash", "read");
    let (_, other) = new_key(&sandbox, "prov", "write");
    let hash = line.rsplit(' ').next().unwrap().to_owned();
    let check = |contents: &str, mode: u32| {
        let path = sandbox.dir.write("keys", contents);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let run = sandbox.run(
            &["keys", "check", &path.display().to_string()],
            &[],
            Duration::from_secs(10),
        );
        (
            run.status.code(),
            run.stdout.lines().map(str::to_owned).collect::<Vec<_>>(),
            path,
        )
    };

    let (code, out, _) = check(&format!("# keys\n\n{line}\n{other}\n"), 0o600);
    assert_eq!(code, Some(0), "{out:?}");
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].contains("ok, 2 keys"), "{out:?}");

    let (code, out, _) = check(&format!("\u{feff}{line}\r\n{other}\r\n"), 0o600);
    assert_eq!(
        code,
        Some(0),
        "a byte-order mark and CRLF are accepted: {out:?}"
    );

    let (code, out, path) = check(&format!("{line}\n"), 0o644);
    assert_eq!(code, Some(0), "{out:?}");
    assert!(
        out[0].starts_with("warning:") && out[0].contains("readable by every user"),
        "{out:?}"
    );

    let bad = [
        line.as_str(),
        &line.replace("sha256:", "sha256:0"),
        &format!("dash write {}", &other[other.len() - 71..]),
        &format!("admin admin {hash}"),
        &format!("bad name read {hash}"),
        &format!("twin read {hash}"),
    ]
    .join("\n");
    let (code, out, _) = check(&bad, 0o600);
    assert_eq!(code, Some(2), "{out:?}");
    let p = path.display().to_string();
    let want = [
        format!("{p}:2: the hash must be 64 hex digits"),
        format!("{p}:3: duplicate name \"dash\" (first on line 1)"),
        format!("{p}:4: unknown scope \"admin\""),
        format!("{p}:5: expected 3 fields"),
        format!("{p}:6: the same hash as line 1"),
    ];
    assert_eq!(out.len(), want.len(), "one line per problem: {out:#?}");
    for (got, want) in out.iter().zip(&want) {
        assert!(
            got.starts_with(want.as_str()),
            "{got:?} does not start with {want:?}"
        );
    }

    for empty in ["", "# nothing yet\n"] {
        let (code, out, _) = check(empty, 0o600);
        assert_eq!(code, Some(2), "{empty:?}: {out:?}");
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("no keys"), "{out:?}");
    }

    let missing = sandbox.dir.path().join("nope").display().to_string();
    let run = sandbox.run(&["keys", "check", &missing], &[], Duration::from_secs(10));
    assert_eq!(run.status.code(), Some(2), "{}", run.describe());
}
