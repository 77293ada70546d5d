//! The benchmark's peer: GET /user/{id}, POST /user and GET /users (keyset paging) over
//! the same table and the same SQL as user-api, in idiomatic axum. Settings:
//! DATABASE_URL, BIND (default 127.0.0.1:5001), POOL_SIZE (default 16).

use std::net::SocketAddr;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_postgres::Row;

const COLUMNS: &str = "id, first_name, last_name, email, created_at, updated_at";

#[derive(Serialize)]
struct User {
    id: i64,
    first_name: String,
    last_name: String,
    email: Option<String>,
    created_at: String,
    updated_at: String,
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn row_to_user(r: &Row) -> User {
    User {
        id: r.get(0),
        first_name: r.get(1),
        last_name: r.get(2),
        email: r.get(3),
        created_at: stamp(r.get(4)),
        updated_at: stamp(r.get(5)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    first_name: String,
    last_name: String,
    email: Option<String>,
}

#[derive(Serialize)]
struct Page {
    users: Vec<User>,
    limit: i64,
    offset: i64,
    next_after_id: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<i64>,
    after_id: Option<i64>,
}

enum ApiError {
    NotFound,
    BadRequest(&'static str),
    Conflict,
    Unavailable,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not found"),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Conflict => (StatusCode::CONFLICT, "email already in use"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
        };
        (status, Json(json!({ "error": msg }))).into_response()
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> ApiError {
        if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
            ApiError::Conflict
        } else {
            ApiError::Unavailable
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(_: deadpool_postgres::PoolError) -> ApiError {
        ApiError::Unavailable
    }
}

async fn get_user(State(pool): State<Pool>, Path(id): Path<i64>) -> Result<Json<User>, ApiError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .await?;
    let row = client
        .query_opt(&stmt, &[&id])
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(row_to_user(&row)))
}

fn valid_name(s: &str) -> bool {
    !s.trim().is_empty() && s.chars().count() <= 100
}

async fn create_user(
    State(pool): State<Pool>,
    Json(u): Json<NewUser>,
) -> Result<impl IntoResponse, ApiError> {
    if !valid_name(&u.first_name) || !valid_name(&u.last_name) {
        return Err(ApiError::BadRequest("names must be 1 to 100 characters"));
    }
    if u.email.as_deref().is_some_and(|e| !e.contains('@')) {
        return Err(ApiError::BadRequest("invalid email"));
    }
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO users (first_name, last_name, email) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
        ))
        .await?;
    let row = client
        .query_one(&stmt, &[&u.first_name, &u.last_name, &u.email])
        .await?;
    let user = row_to_user(&row);
    let location = format!("/user/{}", user.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(user),
    ))
}

async fn list_users(
    State(pool): State<Pool>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page>, ApiError> {
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be 1 to 100"));
    }
    let after = q.after_id.unwrap_or(0);
    let offset: i64 = 0;
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2 OFFSET $3"
        ))
        .await?;
    let rows = client.query(&stmt, &[&after, &limit, &offset]).await?;
    let users: Vec<User> = rows.iter().map(row_to_user).collect();
    let next_after_id = (users.len() as i64 == limit)
        .then(|| users.last().map(|u| u.id))
        .flatten();
    Ok(Json(Page {
        users,
        limit,
        offset: 0,
        next_after_id,
    }))
}

#[tokio::main]
async fn main() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let bind: SocketAddr = std::env::var("BIND")
        .unwrap_or_else(|_| "127.0.0.1:5001".into())
        .parse()
        .expect("BIND");
    let size: usize = std::env::var("POOL_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let pg: tokio_postgres::Config = url.parse().expect("DATABASE_URL");
    let manager = Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager).max_size(size).build().expect("pool");
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/user/{id}", get(get_user))
        .route("/user", post(create_user))
        .route("/users", get(list_users))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
