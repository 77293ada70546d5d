//! The admin console (`ADMIN_PATH`): static files with a strict CSP, gzip when the client
//! accepts it, within its size budget, off when asked, and never behind the API's token.

use std::io::Read;

use crate::helpers::*;

const FILES: [(&str, &str); 3] = [
    ("/admin/", "text/html"),
    ("/admin/admin.js", "text/javascript"),
    ("/admin/admin.css", "text/css"),
];

fn get(app: &TestApp, path: &str, accept_encoding: Option<&str>) -> HttpResponse {
    let headers: Vec<(&str, &str)> = accept_encoding
        .map(|v| ("Accept-Encoding", v))
        .into_iter()
        .collect();
    app.raw("GET", path, &headers, None)
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a gzip body");
    out
}

/// The head of a response as sent, roughly: status line and header lines.
fn head_bytes(r: &HttpResponse) -> usize {
    "HTTP/1.1 200 OK\r\n\r\n".len()
        + r.headers
            .iter()
            .map(|(n, v)| n.len() + 2 + v.len() + 2)
            .sum::<usize>()
}

#[test]
fn admin_files_carry_a_strict_csp_and_the_security_headers() {
    let app = spawn_app();
    for (path, content_type) in FILES {
        let r = get(&app, path, None);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let ct = r.header("content-type").unwrap_or_default();
        assert!(ct.starts_with(content_type), "{path}: {ct}");
        let csp = r.header("content-security-policy").unwrap_or_default();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ] {
            assert!(
                csp.contains(directive),
                "{path}: CSP lacks {directive}: {csp}"
            );
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{path}");
        assert!(r.header("x-request-id").is_some(), "{path}");
    }
}

#[test]
fn admin_files_are_gzipped_exactly_when_the_client_accepts_gzip() {
    let app = spawn_app();
    for (path, _) in FILES {
        let plain = get(&app, path, None);
        assert_eq!(plain.header("content-encoding"), None, "{path}");
        for accept in ["gzip", "gzip, deflate, br, zstd", "br;q=1, *;q=0.5"] {
            let r = get(&app, path, Some(accept));
            assert_eq!(r.status, 200, "{path} {accept}");
            assert_eq!(
                r.header("content-encoding"),
                Some("gzip"),
                "{path} {accept}"
            );
            assert!(r.body.len() < plain.body.len(), "{path}: gzip is smaller");
            assert_eq!(gunzip(&r.body), plain.body, "{path}: gzip of the same file");
        }
        for accept in ["identity", "gzip;q=0", "br", "*;q=0"] {
            let r = get(&app, path, Some(accept));
            assert_eq!(r.header("content-encoding"), None, "{path} {accept}");
            assert_eq!(r.body, plain.body, "{path} {accept}");
        }
    }
}

#[test]
fn admin_console_transfers_at_most_40_kib() {
    let app = spawn_app();
    let mut gzipped = 0;
    let mut plain = 0;
    for (path, _) in FILES {
        let r = get(&app, path, Some("gzip, deflate, br"));
        gzipped += head_bytes(&r) + r.body.len();
        let r = get(&app, path, None);
        plain += head_bytes(&r) + r.body.len();
    }
    // The redirect a browser follows from the bare path costs a head too.
    let r = get(&app, "/admin", None);
    gzipped += head_bytes(&r) + r.body.len();
    eprintln!("admin console: {gzipped} bytes gzipped, {plain} bytes plain");
    assert!(gzipped <= 40 * 1024, "{gzipped} bytes with gzip");
    // Even a client without gzip stays within the budget, for now: a warning sign.
    assert!(plain <= 40 * 1024, "{plain} bytes without gzip");
}

#[test]
fn admin_path_redirects_to_the_page_and_head_works() {
    let app = spawn_app();
    let r = get(&app, "/admin", None);
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("/admin/"));

    let got = get(&app, "/admin/admin.js", None);
    let head = app.raw("HEAD", "/admin/admin.js", &[], None);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(got.body.len().to_string().as_str())
    );
}

#[test]
fn admin_files_are_405_for_other_methods_and_404_beside_them() {
    let app = spawn_app();
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = app.raw(method, "/admin/", &[], None);
        assert_error(&r, 405, &format!("{method} /admin/"));
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
    }
    for path in ["/admin/x.js", "/admin//", "/adminx", "/admin/admin.js/"] {
        assert_error(&get(&app, path, None), 404, path);
    }
}

#[test]
fn admin_console_is_404_everywhere_when_admin_path_is_off() {
    let app = spawn_app_with(|vars| {
        vars.insert("ADMIN_PATH".into(), "off".into());
    });
    for path in ["/admin", "/admin/", "/admin/admin.js", "/admin/admin.css"] {
        for method in ["GET", "HEAD", "POST"] {
            let r = app.raw(method, path, &[], None);
            assert_eq!(r.status, 404, "{method} {path} with the console off");
        }
    }
    assert_eq!(app.list_users("").status, 200, "the API is unchanged");
}

#[test]
fn admin_console_moves_with_admin_path() {
    let app = spawn_app_with(|vars| {
        vars.insert("ADMIN_PATH".into(), "/ops/console".into());
    });
    assert_eq!(get(&app, "/ops/console/", None).status, 200);
    assert_eq!(get(&app, "/ops/console/admin.js", None).status, 200);
    let r = get(&app, "/ops/console", None);
    assert_eq!(r.header("location"), Some("/ops/console/"));
    assert_eq!(get(&app, "/admin/", None).status, 404);
}

#[test]
fn admin_files_need_no_token_while_the_api_still_does() {
    let app = spawn_app_with(|vars| {
        vars.insert("API_TOKEN".into(), "admin-test-token".into());
    });
    for (path, _) in FILES {
        assert_eq!(get(&app, path, None).status, 200, "{path} without a token");
    }
    assert_error(
        &app.raw("GET", "/users", &[], None),
        401,
        "/users without a token",
    );
    assert_eq!(app.list_users("").status, 200, "/users with the token");
}

#[test]
fn admin_requests_are_counted_under_their_own_route_label() {
    let app = spawn_app();
    get(&app, "/admin/", None);
    let text = app.metrics().text();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="admin",status="200"} 1"#),
        "{text}"
    );
}

#[test]
fn admin_page_loads_while_the_database_is_down() {
    let cluster = TestCluster::start();
    let app = spawn_app_on(&cluster, |vars| {
        vars.insert("DB_POOL_TIMEOUT_MS".into(), "500".into());
    });
    cluster.stop();
    for (path, _) in FILES {
        assert_eq!(get(&app, path, None).status, 200, "{path}");
    }
    assert_error(&app.list_users(""), 503, "/users with the database down");
}
