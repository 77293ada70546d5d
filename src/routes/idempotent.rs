//! Writes sent with an `Idempotency-Key`: the first runs and its answer is stored in the
//! same transaction; a retry of the same request gets that answer again with
//! `Idempotent-Replayed: true`; the same key for another request is a 422; a retry while
//! the first still runs is a 409 with `Retry-After`.

use sha2::{Digest, Sha256};

use super::Ctx;
use crate::db::idempotency::{self, StoredResponse, Transaction};
use crate::db::{Access, DbError, Session};
use crate::error::ApiError;
use crate::http::idempotency_key::IdempotencyKey;
use crate::http::{Body, Request, Response};

/// How a keyed write ended.
enum Outcome {
    Fresh(Response),
    Replay(StoredResponse),
}

/// Runs `op` under `key` (see the module's description). Only a successful answer is
/// stored: an error changed nothing, so its retry runs afresh.
pub fn run(
    ctx: &Ctx,
    req: &Request,
    caller: Option<&str>,
    key: &IdempotencyKey,
    mut op: impl FnMut(&mut Session) -> Result<Result<Response, ApiError>, DbError>,
) -> Result<Response, ApiError> {
    let (owner, key, print) = (owner(caller), key.as_ref(), fingerprint(req));
    let outcome = ctx.db.run(Access::Write, |s| {
        let mut tx = Transaction::begin(s)?;
        if !idempotency::try_lock(&mut tx, owner, key)? {
            return Ok(Err(ApiError::IdempotencyKeyInFlight));
        }
        if let Some(stored) = idempotency::find(&mut tx, owner, key)? {
            if stored.fingerprint != print {
                return Ok(Err(ApiError::IdempotencyKeyReused));
            }
            return Ok(Ok(Outcome::Replay(stored.response)));
        }
        let resp = match op(tx.session())? {
            Ok(resp) => resp,
            Err(e) => return Ok(Err(e)),
        };
        let ttl = ctx.idempotency_key_ttl;
        idempotency::store(&mut tx, owner, key, &print, &stored(&resp), ttl)?;
        tx.commit()?;
        if let Some(purger) = &ctx.purger {
            purger.note_stored();
        }
        Ok(Ok(Outcome::Fresh(resp)))
    })??;
    match outcome {
        Outcome::Fresh(resp) => Ok(resp),
        Outcome::Replay(stored) => {
            ctx.metrics.count_replay();
            Ok(replay(stored))
        }
    }
}

/// Whose key it is: keys of different callers never meet. The calling API key's name
/// (`api-token` for `API_TOKEN`), or "anonymous" when the server requires no key.
fn owner(caller: Option<&str>) -> &str {
    caller.unwrap_or("anonymous")
}

/// SHA-256 of the method, the target and the body: a retry must be byte for byte the same
/// request. Each part is length-prefixed so no two requests hash the same input.
fn fingerprint(req: &Request) -> Vec<u8> {
    let body = match &req.body {
        Body::Complete(b) => b.as_slice(),
        Body::TooLarge => &[],
    };
    let query = req.query.as_deref().unwrap_or("");
    let mut hash = Sha256::new();
    for part in [
        req.method.as_str().as_bytes(),
        req.path.as_bytes(),
        query.as_bytes(),
        body,
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().to_vec()
}

/// The parts of a response a retry needs: status, body, and the headers it acts on.
fn stored(resp: &Response) -> StoredResponse {
    StoredResponse {
        status: resp.status,
        location: resp.header("location").map(str::to_owned),
        etag: resp.header("etag").map(str::to_owned),
        body: resp.body.clone(),
    }
}

fn replay(stored: StoredResponse) -> Response {
    let mut resp = Response::json_bytes(stored.status, stored.body);
    if let Some(location) = stored.location {
        resp = resp.with_header("Location", location);
    }
    if let Some(etag) = stored.etag {
        resp = resp.with_header("ETag", etag);
    }
    resp.with_header("Idempotent-Replayed", "true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;

    fn post(target: &str, body: &str) -> Request {
        Request::new(Method::Post, target).with_body(body)
    }

    #[test]
    fn the_same_request_has_the_same_fingerprint_and_any_change_another() {
        let a = fingerprint(&post("/user", "{\"a\":1}"));
        assert_eq!(a, fingerprint(&post("/user", "{\"a\":1}")));
        assert_eq!(a.len(), 32);
        for other in [
            post("/users", "{\"a\":1}"),
            post("/user", "{\"a\": 1}"),
            post("/user?x", "{\"a\":1}"),
            Request::new(Method::Put, "/user").with_body("{\"a\":1}"),
        ] {
            assert_ne!(a, fingerprint(&other), "{other:?}");
        }
        // Parts are delimited: moving a byte from the path to the query changes it.
        assert_ne!(
            fingerprint(&post("/ab?", "")),
            fingerprint(&post("/a?b", ""))
        );
    }

    #[test]
    fn a_replay_carries_the_stored_status_headers_and_body_and_says_so() {
        let r = replay(StoredResponse {
            status: 201,
            location: Some("/user/7".into()),
            etag: Some("\"1\"".into()),
            // as stored: the body the first answer sent, newline included
            body: b"{}\n".to_vec(),
        });
        assert_eq!(r.status, 201);
        assert_eq!(r.header("location"), Some("/user/7"));
        assert_eq!(r.header("etag"), Some("\"1\""));
        assert_eq!(r.header("idempotent-replayed"), Some("true"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body, b"{}\n");
    }
}
