//! The users table: one function per statement.
//!
//! Every statement is a `const` run through `query_typed`: parameters carry their types.
//! The session prepares each once per connection and reuses it (the const keys its
//! cache), or, with `DB_STATEMENT_CACHE=off`, sends it unnamed in one round trip, which
//! keeps it safe behind PgBouncer in transaction mode before 1.21.

use tokio_postgres::Row;
use tokio_postgres::types::Type;

use super::{DbError, Session};

use crate::domain::{ListQuery, NewUser, Timestamp, User, UserId, UserPatch};

/// The columns `row_to_user` reads, in its order. A macro so that every statement is
/// one `&'static str` built at compile time.
macro_rules! columns {
    () => {
        "id, first_name, last_name, email, created_at, updated_at"
    };
}

/// `updated_at` must move on every change, even two within one microsecond.
macro_rules! touch {
    () => {
        "updated_at = greatest(clock_timestamp(), updated_at + interval '1 microsecond')"
    };
}

const INSERT: &str = concat!(
    "INSERT INTO users (first_name, last_name, email) VALUES ($1, $2, $3) RETURNING ",
    columns!()
);
const SELECT_ONE: &str = concat!("SELECT ", columns!(), " FROM users WHERE id = $1");
const REPLACE: &str = concat!(
    "UPDATE users SET first_name = $2, last_name = $3, email = $4, ",
    touch!(),
    " WHERE id = $1 RETURNING ",
    columns!()
);
const PATCH: &str = concat!(
    "UPDATE users SET first_name = coalesce($2, first_name), ",
    "last_name = coalesce($3, last_name), email = CASE WHEN $4 THEN $5 ELSE email END, ",
    touch!(),
    " WHERE id = $1 RETURNING ",
    columns!()
);
const DELETE: &str = "DELETE FROM users WHERE id = $1 RETURNING id";
const LIST: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM users WHERE id > $1 ORDER BY id LIMIT $2 OFFSET $3"
);
const LIST_BY_EMAIL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM users WHERE lower(email) = lower($4) AND id > $1 ORDER BY id LIMIT $2 OFFSET $3"
);

fn row_to_user(row: &Row) -> Result<User, DbError> {
    Ok(User {
        id: row.try_get(0)?,
        first_name: row.try_get(1)?,
        last_name: row.try_get(2)?,
        email: row.try_get(3)?,
        created_at: Timestamp(row.try_get(4)?),
        updated_at: Timestamp(row.try_get(5)?),
    })
}

fn one(rows: Vec<Row>) -> Result<Option<User>, DbError> {
    rows.first().map(row_to_user).transpose()
}

pub fn insert(c: &mut Session, u: &NewUser) -> Result<User, DbError> {
    let email = u.email.as_ref().map(AsRef::as_ref);
    let row = c.query_typed_one(
        INSERT,
        &[
            (&u.first_name.as_ref(), Type::TEXT),
            (&u.last_name.as_ref(), Type::TEXT),
            (&email, Type::TEXT),
        ],
    )?;
    row_to_user(&row)
}

pub fn get(c: &mut Session, id: UserId) -> Result<Option<User>, DbError> {
    one(c.query_typed(SELECT_ONE, &[(&id.get(), Type::INT8)])?)
}

pub fn replace(c: &mut Session, id: UserId, u: &NewUser) -> Result<Option<User>, DbError> {
    let email = u.email.as_ref().map(AsRef::as_ref);
    one(c.query_typed(
        REPLACE,
        &[
            (&id.get(), Type::INT8),
            (&u.first_name.as_ref(), Type::TEXT),
            (&u.last_name.as_ref(), Type::TEXT),
            (&email, Type::TEXT),
        ],
    )?)
}

/// Changes only the fields the patch names; an empty patch changes nothing and returns
/// the user as it is.
pub fn patch(c: &mut Session, id: UserId, p: &UserPatch) -> Result<Option<User>, DbError> {
    if p.is_empty() {
        return get(c, id);
    }
    let first = p.first_name.as_ref().map(AsRef::as_ref);
    let last = p.last_name.as_ref().map(AsRef::as_ref);
    let email = p.email.as_ref().and_then(|e| e.as_ref().map(AsRef::as_ref));
    one(c.query_typed(
        PATCH,
        &[
            (&id.get(), Type::INT8),
            (&first, Type::TEXT),
            (&last, Type::TEXT),
            (&p.email.is_some(), Type::BOOL),
            (&email, Type::TEXT),
        ],
    )?)
}

/// Whether a user was deleted.
pub fn delete(c: &mut Session, id: UserId) -> Result<bool, DbError> {
    let rows = c.query_typed(DELETE, &[(&id.get(), Type::INT8)])?;
    Ok(!rows.is_empty())
}

/// A page ordered by id. `after_id` pages by key (an index range scan at any depth);
/// `offset` skips rows (PostgreSQL still reads them).
pub fn list(c: &mut Session, q: &ListQuery) -> Result<Vec<User>, DbError> {
    let after = q.after_id.map_or(0, UserId::get);
    let rows = match &q.email {
        None => c.query_typed(
            LIST,
            &[
                (&after, Type::INT8),
                (&q.limit, Type::INT8),
                (&q.offset, Type::INT8),
            ],
        )?,
        Some(email) => c.query_typed(
            LIST_BY_EMAIL,
            &[
                (&after, Type::INT8),
                (&q.limit, Type::INT8),
                (&q.offset, Type::INT8),
                (&email.as_ref(), Type::TEXT),
            ],
        )?,
    };
    rows.iter().map(row_to_user).collect()
}
