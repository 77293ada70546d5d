//! `/metrics`: Prometheus text format 0.0.4 with the series API.md names.

use std::collections::{BTreeMap, HashMap};

use crate::helpers::*;

/// One sample line: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples and the `# TYPE` of each metric family; panics on a malformed line.
fn parse(text: &str) -> (Vec<Sample>, HashMap<String, String>) {
    let mut samples = Vec::new();
    let mut types = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        samples
            .push(parse_sample(line).unwrap_or_else(|| panic!("malformed sample line {line:?}")));
    }
    (samples, types)
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    if !valid_name(&name) {
        return None;
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let end = loop {
            while chars.next_if(|(_, c)| *c == ',' || *c == ' ').is_some() {}
            match chars.peek() {
                Some((i, '}')) => break *i,
                None => return None,
                _ => {}
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            if !valid_name(&key) {
                return None;
            }
            labels.insert(key, value);
        };
        rest = &inner[end + 1..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

fn scrape(app: &TestApp) -> (Vec<Sample>, HashMap<String, String>) {
    let r = app.metrics();
    assert_eq!(r.status, 200, "{}", r.text());
    parse(&r.text())
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

#[test]
fn metrics_returns_200_in_the_prometheus_text_format() {
    let app = spawn_app();

    let r = app.metrics();

    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/plain; version=0.0.4"),
        "Content-Type is {ct:?}"
    );
    assert_request_id(&r, "/metrics");
    let (samples, types) = parse(&r.text());
    assert!(!samples.is_empty());
    for (family, kind) in &types {
        assert!(
            ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind.as_str()),
            "# TYPE {family} {kind}"
        );
    }
}

#[test]
fn metrics_count_requests_by_method_route_pattern_and_status() {
    let app = spawn_app();
    app.get_user(987_654_321);
    app.get_user(987_654_321);
    app.create_user_ok(&ada());

    let (samples, types) = scrape(&app);

    assert_eq!(
        types.get("http_requests_total").map(String::as_str),
        Some("counter")
    );
    let not_found = find(
        &samples,
        "http_requests_total",
        &[
            ("method", "GET"),
            ("route", "/user/{id}"),
            ("status", "404"),
        ],
    )
    .expect("http_requests_total{method=\"GET\",route=\"/user/{id}\",status=\"404\"}");
    assert!(not_found.value >= 2.0, "{not_found:?}");
    let created = find(
        &samples,
        "http_requests_total",
        &[("method", "POST"), ("route", "/user"), ("status", "201")],
    )
    .expect("http_requests_total{method=\"POST\",route=\"/user\",status=\"201\"}");
    assert!(created.value >= 1.0, "{created:?}");
    for s in samples.iter().filter(|s| s.name == "http_requests_total") {
        for key in ["method", "route", "status"] {
            assert!(s.labels.contains_key(key), "{s:?} lacks {key}");
        }
    }
}

#[test]
fn metrics_never_label_a_raw_path() {
    let app = spawn_app();
    let id = app.create_named("Ada", "Lovelace", None);
    app.get_user(id);
    app.get_user(987_654_321);
    app.request("GET", "/users/987654321", &[], None);
    app.request("GET", "/no-such-route-31337", &[], None);
    app.request("GET", "/users?limit=3&offset=31337", &[], None);

    let (samples, _) = scrape(&app);

    for s in &samples {
        for (key, value) in &s.labels {
            assert!(
                !value.contains("987654321") && !value.contains("31337") && !value.contains('?'),
                "{} has the raw path {key}={value:?}",
                s.name
            );
        }
    }
}

#[test]
fn metrics_have_a_request_duration_histogram_by_route() {
    let app = spawn_app();
    for _ in 0..3 {
        app.get_user(4242);
    }

    let (samples, types) = scrape(&app);

    assert_eq!(
        types
            .get("http_request_duration_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    let of_route = |suffix: &str| -> Vec<&Sample> {
        samples
            .iter()
            .filter(|s| {
                s.name == format!("http_request_duration_seconds{suffix}")
                    && s.labels.get("route").map(String::as_str) == Some("/user/{id}")
                    && s.labels.get("method").is_none_or(|m| m == "GET")
                    && s.labels.get("status").is_none_or(|m| m == "404")
            })
            .collect()
    };
    let buckets = of_route("_bucket");
    assert!(buckets.len() >= 2, "buckets for /user/{{id}}: {buckets:?}");
    let mut bounds: Vec<(f64, f64)> = buckets
        .iter()
        .map(|s| {
            let le = s.labels.get("le").expect("a bucket has le");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("le is a number")
            };
            (le, s.value)
        })
        .collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(
        bounds.windows(2).all(|w| w[0].1 <= w[1].1),
        "buckets are cumulative: {bounds:?}"
    );
    let (last_le, inf_count) = *bounds.last().unwrap();
    assert_eq!(last_le, f64::INFINITY, "there is a +Inf bucket");
    let count = of_route("_count");
    let sum = of_route("_sum");
    assert_eq!(count.len(), 1, "one _count for the series");
    assert_eq!(sum.len(), 1, "one _sum for the series");
    assert_eq!(count[0].value, inf_count, "_count equals the +Inf bucket");
    assert!(
        count[0].value >= 3.0,
        "three requests counted: {:?}",
        count[0]
    );
    assert!(sum[0].value >= 0.0);
}

#[test]
fn metrics_count_each_requests_wait_for_a_worker_but_not_the_scrape() {
    let app = spawn_app();
    let count = |samples: &[Sample]| {
        find(samples, "http_request_queue_seconds_count", &[])
            .expect("http_request_queue_seconds_count")
            .value
    };
    let (before, types) = scrape(&app);
    assert_eq!(
        types.get("http_request_queue_seconds").map(String::as_str),
        Some("histogram")
    );

    for _ in 0..3 {
        app.get_user(4242);
    }
    // Answered by the connection layer itself, as the scrapes are: no worker taken.
    app.request("GET", "/health/live", &[], None);

    let (after, _) = scrape(&app);
    assert_eq!(count(&after) - count(&before), 3.0);
    let inf = find(
        &after,
        "http_request_queue_seconds_bucket",
        &[("le", "+Inf")],
    )
    .expect("a +Inf bucket");
    assert_eq!(inf.value, count(&after));
}

#[test]
fn metrics_report_the_pool_and_its_wait_timeouts() {
    // Arrange: a pool of two, warm, and nothing running.
    let app = spawn_app_with(|vars| {
        vars.insert("DB_POOL_SIZE".into(), "2".into());
    });
    let id = id_of(&app.create_user_ok(&ada()));
    wait_for_idle_connections(app.addr, 2.0);
    let gauge = |samples: &[Sample], state: &str| {
        find(samples, "db_pool_connections", &[("state", state)])
            .unwrap_or_else(|| panic!("db_pool_connections{{state=\"{state}\"}}"))
            .value
    };

    let (idle, types) = scrape(&app);

    assert_eq!(
        types.get("db_pool_connections").map(String::as_str),
        Some("gauge")
    );
    assert_eq!(
        types.get("db_pool_wait_timeouts_total").map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        (gauge(&idle, "idle"), gauge(&idle, "in_use")),
        (2.0, 0.0),
        "both connections idle while nothing runs"
    );
    let timeouts = find(&idle, "db_pool_wait_timeouts_total", &[])
        .expect("db_pool_wait_timeouts_total")
        .value;
    assert_eq!(timeouts, 0.0, "no request has waited for a connection");

    // Act: one request blocked behind our lock holds one connection.
    let mut locker = app.db();
    let lock = lock_users(&mut locker, "ACCESS EXCLUSIVE");
    let blocked = get_in_background(app.addr, format!("/user/{id}"));
    let busy = poll_until(std::time::Duration::from_secs(30), || {
        let (samples, _) = scrape(&app);
        (gauge(&samples, "in_use") >= 1.0).then_some(samples)
    });
    lock.commit().unwrap();
    let answer = blocked.join().unwrap().map(|r| r.status);

    // Assert: one in use, one idle; back to two idle once it is answered.
    let busy = busy.expect("db_pool_connections{state=\"in_use\"} never showed the request");
    assert_eq!(
        (gauge(&busy, "idle"), gauge(&busy, "in_use")),
        (1.0, 1.0),
        "one connection in use by the blocked request"
    );
    assert_eq!(answer.ok(), Some(200));
    let released = poll_until(std::time::Duration::from_secs(10), || {
        let (samples, _) = scrape(&app);
        (gauge(&samples, "in_use") == 0.0).then_some(())
    });
    assert!(released.is_some(), "the connection was never given back");
}

#[test]
fn metrics_report_build_info_with_the_version() {
    let app = spawn_app();

    let (samples, _) = scrape(&app);

    let info = find(
        &samples,
        "user_api_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
    )
    .expect("user_api_build_info{version=\"<crate version>\"}");
    assert_eq!(info.value, 1.0);
}

#[test]
fn head_metrics_returns_the_get_headers_without_a_body() {
    let app = spawn_app();
    let mut conn = app.connection();

    let head = conn.send("HEAD", "/metrics", &[], None).unwrap();

    assert_eq!(head.status, 200);
    assert!(
        head.header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain; version=0.0.4")
    );
    assert_no_head_response_carried_a_body(&mut conn);
}

#[test]
fn sample_lines_parse_with_escaped_labels() {
    let s = parse_sample(r#"x_total{a="1",b="q\"uote",c="/user/{id}"} 3"#).unwrap();
    assert_eq!(s.name, "x_total");
    assert_eq!(s.labels["b"], "q\"uote");
    assert_eq!(s.labels["c"], "/user/{id}");
    assert_eq!(s.value, 3.0);
    assert_eq!(parse_sample("y 1.5e3").unwrap().value, 1500.0);
    assert!(parse_sample("bad line").is_none());
}
