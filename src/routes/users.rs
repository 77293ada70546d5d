//! The user handlers: parse typed input, run one query, return a typed response.

use serde::Serialize;

use super::{Ctx, json};
use crate::db::{Access, users};
use crate::domain::{ListQuery, NewUser, User, UserId, UserPatch};
use crate::error::ApiError;
use crate::http::{Request, Response, body};

const NO_USER: ApiError = ApiError::NotFound("user");

pub fn create(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let new = NewUser::try_from(body::json_object(req, ctx.max_body_bytes)?)?;
    let user = ctx.db.run(Access::Write, |c| users::insert(c, &new))?;
    Ok(json(201, &user)?.with_header("Location", format!("/user/{}", user.id)))
}

pub fn get(ctx: &Ctx, id: UserId) -> Result<Response, ApiError> {
    let user = ctx.db.find(|c| users::get(c, id))?.ok_or(NO_USER)?;
    json(200, &user)
}

pub fn replace(ctx: &Ctx, req: &Request, id: UserId) -> Result<Response, ApiError> {
    let new = NewUser::try_from(body::json_object(req, ctx.max_body_bytes)?)?;
    let user = ctx
        .db
        .run(Access::Write, |c| users::replace(c, id, &new))?
        .ok_or(NO_USER)?;
    json(200, &user)
}

pub fn patch(ctx: &Ctx, req: &Request, id: UserId) -> Result<Response, ApiError> {
    let patch = UserPatch::try_from(body::json_object(req, ctx.max_body_bytes)?)?;
    let user = ctx
        .db
        .run(Access::Write, |c| users::patch(c, id, &patch))?
        .ok_or(NO_USER)?;
    json(200, &user)
}

pub fn delete(ctx: &Ctx, id: UserId) -> Result<Response, ApiError> {
    if !ctx.db.run(Access::Write, |c| users::delete(c, id))? {
        return Err(NO_USER);
    }
    Ok(Response::new(204).with_header("Content-Type", "application/json"))
}

#[derive(Serialize)]
struct Page {
    users: Vec<User>,
    limit: i64,
    offset: i64,
    next_after_id: Option<i64>,
}

pub fn list(ctx: &Ctx, req: &Request) -> Result<Response, ApiError> {
    let q = ListQuery::parse(req.query.as_deref(), ctx.max_list_offset)?;
    let users = ctx.db.run(Access::Read, |c| users::list(c, &q))?;
    let full = i64::try_from(users.len()).is_ok_and(|n| n == q.limit);
    let next_after_id = users.last().filter(|_| full).map(|u| u.id);
    json(
        200,
        &Page {
            users,
            limit: q.limit,
            offset: q.offset,
            next_after_id,
        },
    )
}
