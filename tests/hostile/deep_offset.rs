//! An unbounded `offset` makes the database read and discard every skipped row: a cheap
//! denial of service. Past `MAX_LIST_OFFSET` it is a 400 that points to `after_id`.

use crate::common::spawn_app_with;

#[test]
fn listing_is_400_pointing_to_after_id_when_offset_is_deeper_than_the_maximum() {
    let app = spawn_app_with(|_| {});
    let r = app.list_users("limit=100&offset=999999999");
    assert_eq!(r.status, 400, "{}", r.text());
    let body = r.json();
    assert_eq!(body["field"], "offset", "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains("after_id"), "{message}");

    assert_eq!(app.list_users("offset=10000").status, 200);
    assert_eq!(app.list_users("offset=10001").status, 400);
}

#[test]
fn listing_maximum_offset_follows_the_setting_when_it_is_set() {
    let app = spawn_app_with(|vars| {
        vars.insert("MAX_LIST_OFFSET".into(), "20".into());
    });
    assert_eq!(app.list_users("offset=20").status, 200);
    assert_eq!(app.list_users("offset=21").status, 400);
}
