//! `serve` answers the API end to end, configured from the environment and `.env`.

use std::collections::BTreeMap;

use crate::support::*;

#[test]
fn serve_answers_the_api_end_to_end() {
    let db = fresh_database();
    let server = ServerProcess::start(&[("DATABASE_URL", db.url.clone())]);
    let body = br#"{"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}"#;

    let created = server.post_json("/users", body);
    let listed = server.get("/users").unwrap();

    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["users"][0], created.json());
    let stored: BTreeMap<String, i64> = db
        .connect()
        .query("SELECT email, id FROM users", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(stored.len(), 1);
}

#[test]
fn serve_reads_dot_env_and_real_environment_variables_win() {
    // DATABASE_URL only in .env: the server starts only if it reads the file. SERVED_BY in
    // both: the real environment's value must be the one used.
    let db = fresh_database();
    let dotenv = format!(
        "# as an operator would write it\nDATABASE_URL={}\nSERVED_BY=from-dotenv\n",
        db.url
    );

    let server = ServerProcess::start_with_dotenv(
        &[("SERVED_BY", "from-environment".into())],
        Some(&dotenv),
    );

    let r = server.get("/health").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-served-by"), Some("from-environment"));
}
