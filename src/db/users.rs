//! The users table: one function per statement.
//!
//! Every statement is a `const` run through `query_typed`: parameters carry their types.
//! The session prepares each once per connection and reuses it (the const keys its
//! cache), or, with `DB_STATEMENT_CACHE=off`, sends it unnamed in one round trip, which
//! keeps it safe behind PgBouncer in transaction mode before 1.21.

use std::time::SystemTime;

use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use super::session::Params;
use super::{DbError, Session};

use crate::domain::{ListQuery, NewUser, Timestamp, User, UserId, UserPatch, UserView, Version};

/// The unique index on `lower(email)` (sql/0001_create_users.sql): a row refused with
/// `Kind::Conflict(EMAIL_INDEX)` has an email another user already has.
pub const EMAIL_INDEX: &str = "users_email_lower_key";

/// What a write guarded by `If-Match` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Guarded<T> {
    /// The user had one of the versions named, and was changed: its new state.
    Applied(T),
    /// There is no such user.
    Missing,
    /// The user exists, in none of the versions named.
    Mismatch,
}

/// The outcome of a guarded statement's rows (see `guarded!`).
fn guarded(rows: Vec<Row>) -> Result<Guarded<User>, DbError> {
    let Some(row) = rows.first() else {
        return Ok(Guarded::Missing);
    };
    if row.try_get::<_, bool>(6)? {
        Ok(Guarded::Applied(row_to_user(row)?))
    } else {
        Ok(Guarded::Mismatch)
    }
}

/// The versions as a `timestamptz[]` parameter.
fn stamps(versions: &[Version]) -> Vec<SystemTime> {
    versions.iter().map(|v| v.timestamp().0).collect()
}

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

/// A conditional write is one statement: the change, guarded by the versions the client
/// named, and (only when the guard held nothing back) the row as the statement's
/// snapshot saw it, so that a zero-row change tells "no such user" (no row at all) from
/// "changed since" (a row, with `applied` false) without a second round trip or a
/// read-then-write race. The last column is `applied`.
macro_rules! guarded {
    ($change:expr) => {
        concat!(
            "WITH changed AS (",
            $change,
            " RETURNING ",
            columns!(),
            ") SELECT ",
            columns!(),
            ", true FROM changed UNION ALL SELECT ",
            columns!(),
            ", false FROM users WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM changed)"
        )
    };
}

const REPLACE_IF: &str = guarded!(concat!(
    "UPDATE users SET first_name = $2, last_name = $3, email = $4, ",
    touch!(),
    " WHERE id = $1 AND updated_at = ANY($5)"
));
const PATCH_IF: &str = guarded!(concat!(
    "UPDATE users SET first_name = coalesce($2, first_name), ",
    "last_name = coalesce($3, last_name), email = CASE WHEN $4 THEN $5 ELSE email END, ",
    touch!(),
    " WHERE id = $1 AND updated_at = ANY($6)"
));
const DELETE_IF: &str = guarded!("DELETE FROM users WHERE id = $1 AND updated_at = ANY($2)");
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

fn row_to_view(row: &Row) -> Result<UserView<'_>, DbError> {
    Ok(UserView {
        id: row.try_get(0)?,
        first_name: row.try_get(1)?,
        last_name: row.try_get(2)?,
        email: row.try_get(3)?,
        created_at: Timestamp(row.try_get(4)?),
        updated_at: Timestamp(row.try_get(5)?),
    })
}

fn row_to_user(row: &Row) -> Result<User, DbError> {
    row_to_view(row).map(UserView::to_user)
}

/// A page of users, kept as the rows PostgreSQL sent so that it is shown from them
/// directly (see [`UserView`]).
pub struct Page(Vec<Row>);

impl Page {
    /// The users, in order; an error when a row is not the shape `columns!` names.
    pub fn users(&self) -> Result<Vec<UserView<'_>>, DbError> {
        let mut users = Vec::with_capacity(self.0.len());
        for row in &self.0 {
            users.push(row_to_view(row)?);
        }
        Ok(users)
    }
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
    one(replace_rows(c, REPLACE, id, u, None)?)
}

/// Runs `REPLACE` or, with `versions`, `REPLACE_IF`.
fn replace_rows(
    c: &mut Session,
    sql: &'static str,
    id: UserId,
    u: &NewUser,
    versions: Option<&[Version]>,
) -> Result<Vec<Row>, DbError> {
    let first: &str = u.first_name.as_ref();
    let last: &str = u.last_name.as_ref();
    let email = u.email.as_ref().map(AsRef::as_ref);
    let fields: &Params<'_> = &[
        (&first, Type::TEXT),
        (&last, Type::TEXT),
        (&email, Type::TEXT),
    ];
    write_rows(c, sql, id, fields, versions)
}

/// Runs a write of user `id` (`$1`) with `fields` (`$2` on) and, when it is guarded,
/// the versions last: the shape every write statement of a user shares.
fn write_rows(
    c: &mut Session,
    sql: &'static str,
    id: UserId,
    fields: &Params<'_>,
    versions: Option<&[Version]>,
) -> Result<Vec<Row>, DbError> {
    let id = id.get();
    let stamps = versions.map(stamps);
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![(&id, Type::INT8)];
    params.extend(fields.iter().cloned());
    params.extend(stamps.as_ref().map(|s| (s as _, Type::TIMESTAMPTZ_ARRAY)));
    c.query_typed(sql, &params)
}

/// Changes only the fields the patch names; an empty patch changes nothing and returns
/// the user as it is.
pub fn patch(c: &mut Session, id: UserId, p: &UserPatch) -> Result<Option<User>, DbError> {
    if p.is_empty() {
        return get(c, id);
    }
    one(patch_rows(c, PATCH, id, p, None)?)
}

/// Runs `PATCH` or, with `versions`, `PATCH_IF`.
fn patch_rows(
    c: &mut Session,
    sql: &'static str,
    id: UserId,
    p: &UserPatch,
    versions: Option<&[Version]>,
) -> Result<Vec<Row>, DbError> {
    let first = p.first_name.as_ref().map(AsRef::as_ref);
    let last = p.last_name.as_ref().map(AsRef::as_ref);
    let email_given = p.email.is_some();
    let email = p.email.as_ref().and_then(|e| e.as_ref().map(AsRef::as_ref));
    let fields: &Params<'_> = &[
        (&first, Type::TEXT),
        (&last, Type::TEXT),
        (&email_given, Type::BOOL),
        (&email, Type::TEXT),
    ];
    write_rows(c, sql, id, fields, versions)
}

/// Whether a user was deleted.
pub fn delete(c: &mut Session, id: UserId) -> Result<bool, DbError> {
    let rows = c.query_typed(DELETE, &[(&id.get(), Type::INT8)])?;
    Ok(!rows.is_empty())
}

/// A page ordered by id. `after_id` pages by key (an index range scan at any depth);
/// `offset` skips rows (PostgreSQL still reads them).
pub fn list(c: &mut Session, q: &ListQuery) -> Result<Page, DbError> {
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
    Ok(Page(rows))
}

/// As [`replace`], only when the user is at one of `versions`.
pub fn replace_if(
    c: &mut Session,
    id: UserId,
    u: &NewUser,
    versions: &[Version],
) -> Result<Guarded<User>, DbError> {
    guarded(replace_rows(c, REPLACE_IF, id, u, Some(versions))?)
}

/// As [`patch`], only when the user is at one of `versions`. An empty patch changes
/// nothing, so it only reads (no race to guard against).
pub fn patch_if(
    c: &mut Session,
    id: UserId,
    p: &UserPatch,
    versions: &[Version],
) -> Result<Guarded<User>, DbError> {
    if p.is_empty() {
        return Ok(match get(c, id)? {
            None => Guarded::Missing,
            Some(u) if versions.contains(&Version::of(&u)) => Guarded::Applied(u),
            Some(_) => Guarded::Mismatch,
        });
    }
    guarded(patch_rows(c, PATCH_IF, id, p, Some(versions))?)
}

/// As [`delete`], only when the user is at one of `versions`; `Applied` holds the user
/// as it was.
pub fn delete_if(
    c: &mut Session,
    id: UserId,
    versions: &[Version],
) -> Result<Guarded<User>, DbError> {
    guarded(c.query_typed(
        DELETE_IF,
        &[
            (&id.get(), Type::INT8),
            (&stamps(versions), Type::TIMESTAMPTZ_ARRAY),
        ],
    )?)
}
