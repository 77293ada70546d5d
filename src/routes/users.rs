//! The user handlers: parse typed input, run one query, return a typed response.
//!
//! Every write goes through [`write`]: without `Idempotency-Key` it is the one statement
//! it always was; with one, it runs in the key's transaction (see `idempotent`).

use serde::Serialize;

use super::{Args, Ctx, idempotent, json, json_sized};
use crate::db::users::{self, Guarded};
use crate::db::{Access, DbError, Session};
use crate::domain::{ListQuery, NewUser, User, UserId, UserPatch, UserView, Version};
use crate::error::ApiError;
use crate::http::idempotency_key::IdempotencyKey;
use crate::http::precondition::{self, EntityTag, TagList};
use crate::http::{Request, Response, body};

const NO_USER: ApiError = ApiError::NotFound("user");

/// What a handler answers; a write decides it inside its database round trip, so that a
/// keyed write can store it (or roll back on an error) in the same transaction.
type Answer = Result<Response, ApiError>;

pub fn create(ctx: &Ctx, req: &Request, args: Args<'_>) -> Answer {
    let new = NewUser::try_from(body::json_object(req, ctx.max_body_bytes)?)?;
    write(ctx, req, args.caller, |c| {
        let user = users::insert(c, &new)?;
        Ok(with_etag(json(201, &user), &user)
            .map(|r| r.with_header("Location", format!("/user/{}", user.id))))
    })
}

pub fn get(ctx: &Ctx, req: &Request, args: Args<'_>) -> Answer {
    let id = args.user_id()?;
    let unless = precondition::if_none_match(req)?;
    let user = ctx.db.find(|c| users::get(c, id))?.ok_or(NO_USER)?;
    let token = Version::of(&user).token();
    if unless.is_some_and(|tags| tags.matches_weakly(&token.to_string())) {
        return Ok(Response::new(304).with_header("ETag", EntityTag::strong(token)));
    }
    Ok(json(200, &user)?.with_header("ETag", EntityTag::strong(token)))
}

pub fn replace(ctx: &Ctx, req: &Request, args: Args<'_>) -> Answer {
    let id = args.user_id()?;
    change::<NewUser>(ctx, req, args.caller, id, users::replace, users::replace_if)
}

pub fn patch(ctx: &Ctx, req: &Request, args: Args<'_>) -> Answer {
    let id = args.user_id()?;
    change::<UserPatch>(ctx, req, args.caller, id, users::patch, users::patch_if)
}

/// A change written whatever the user's version ([`users::replace`], [`users::patch`]).
type Unguarded<T> = fn(&mut Session, UserId, &T) -> Result<Option<User>, DbError>;
/// The same change, only over one of the versions `If-Match` named.
type UnderIfMatch<T> = fn(&mut Session, UserId, &T, &[Version]) -> Result<Guarded<User>, DbError>;

/// A PUT or PATCH: the change `T` from the body, written as it is or, under `If-Match`,
/// only over one of the versions named.
fn change<T: TryFrom<body::JsonObject, Error = ApiError>>(
    ctx: &Ctx,
    req: &Request,
    caller: Option<&str>,
    id: UserId,
    plain: Unguarded<T>,
    guarded: UnderIfMatch<T>,
) -> Answer {
    let change = T::try_from(body::json_object(req, ctx.max_body_bytes)?)?;
    let versions = if_match(ctx, req)?;
    write(ctx, req, caller, |c| {
        Ok(changed(match &versions {
            None => plain(c, id, &change)?.map_or(Guarded::Missing, Guarded::Applied),
            Some(v) => guarded(c, id, &change, v)?,
        }))
    })
}

pub fn delete(ctx: &Ctx, req: &Request, args: Args<'_>) -> Answer {
    let id = args.user_id()?;
    let versions = if_match(ctx, req)?;
    write(ctx, req, args.caller, |c| {
        let deleted = match &versions {
            None => users::delete(c, id)?,
            Some(v) => match users::delete_if(c, id, v)? {
                Guarded::Applied(_) => true,
                Guarded::Missing => false,
                Guarded::Mismatch => return Ok(Err(ApiError::PreconditionFailed)),
            },
        };
        if !deleted {
            return Ok(Err(NO_USER));
        }
        Ok(Ok(
            Response::new(204).with_header("Content-Type", "application/json")
        ))
    })
}

/// Runs a write: alone, or in its `Idempotency-Key`'s transaction when it has one.
fn write(
    ctx: &Ctx,
    req: &Request,
    caller: Option<&str>,
    op: impl FnMut(&mut Session) -> Result<Answer, DbError>,
) -> Answer {
    match IdempotencyKey::from_request(req)? {
        None => ctx.db.run(Access::Write, op)?,
        Some(key) => idempotent::run(ctx, req, caller, &key, op),
    }
}

/// The versions `If-Match` names, or `None` when the write is unconditional (no header,
/// or `*`: "any current version", which a PUT, PATCH or DELETE of a user that must
/// exist asks anyway). A tag this service never issued stays in as no version at all,
/// so the write fails with 412 rather than running unguarded.
fn if_match(ctx: &Ctx, req: &Request) -> Result<Option<Vec<Version>>, ApiError> {
    match precondition::if_match(req)? {
        None if ctx.require_if_match => Err(ApiError::PreconditionRequired),
        None | Some(TagList::Any) => Ok(None),
        Some(tags) => Ok(Some(
            tags.strong_tokens()
                .filter_map(Version::from_token)
                .collect(),
        )),
    }
}

/// The answer to a PUT or PATCH.
fn changed(outcome: Guarded<User>) -> Answer {
    match outcome {
        Guarded::Applied(user) => with_etag(json(200, &user), &user),
        Guarded::Missing => Err(NO_USER),
        Guarded::Mismatch => Err(ApiError::PreconditionFailed),
    }
}

fn with_etag(resp: Answer, user: &User) -> Answer {
    Ok(resp?.with_header("ETag", EntityTag::strong(Version::of(user).token())))
}

/// A page's own keys, and the most one user adds (200 bytes with 50-character names and
/// a long email; a longer page just grows its buffer).
const PAGE_BYTES: usize = 96;
const USER_BYTES: usize = 256;

#[derive(Serialize)]
struct Page<'a> {
    users: Vec<UserView<'a>>,
    limit: i64,
    offset: i64,
    next_after_id: Option<i64>,
}

/// A page carries no ETag: a tag that notices every change to any user on it (deletes
/// and inserts included) would cost hashing the page or a second query; clients
/// revalidate single users instead (docs/API.md).
pub fn list(ctx: &Ctx, req: &Request, _: Args<'_>) -> Answer {
    let q = ListQuery::parse(req.query.as_deref(), ctx.max_list_offset)?;
    let page = ctx.db.run(Access::Read, |c| users::list(c, &q))?;
    let users = page.users()?;
    let full = i64::try_from(users.len()).is_ok_and(|n| n == q.limit);
    let next_after_id = users.last().filter(|_| full).map(|u| u.id);
    let capacity = PAGE_BYTES + users.len() * USER_BYTES;
    json_sized(
        200,
        &Page {
            users,
            limit: q.limit,
            offset: q.offset,
            next_after_id,
        },
        capacity,
    )
}
