//! The worker pool: threads that take complete requests off a bounded queue, run the
//! handler, write the response, and hand the connection back to the reactor.
//!
//! A worker never reads from a client, and writes only what the socket takes at once; a
//! slow reader's remaining bytes go back to the reactor, so no client can hold a worker.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use mio::Token;

use crate::http::{Handler, Request, Response, request_id};

use super::Stopper;
use super::connection::{After, Connection, Stage};
use super::handoff::{JobReceiver, ReturnSender};
use super::reader::Ready;
use super::response::{self, Framing};

/// A complete request and the connection it came on.
pub(crate) struct Job {
    pub token: Token,
    pub conn: Connection,
    pub ready: Box<Ready>,
}

/// A connection coming back to the reactor, its response written or under way.
pub(crate) struct Returned {
    pub token: Token,
    pub conn: Connection,
    /// The socket failed while writing: close it without further ado.
    pub broken: bool,
}

/// What every worker shares.
pub(crate) struct Shared {
    pub jobs: JobReceiver<Job>,
    pub handler: Arc<dyn Handler>,
    /// Once a graceful stop began, every response closes its connection.
    pub stopper: Stopper,
}

/// The body of one worker thread; returns when the reactor drops the job queue.
pub(crate) fn run(shared: &Shared, back: &ReturnSender<Returned>) {
    while let Some(Job {
        token,
        mut conn,
        ready,
    }) = shared.jobs.recv()
    {
        let broken = serve(shared, &mut conn, *ready);
        // Refused only once the reactor is gone: the connection then closes here.
        let _ = back.send(Returned {
            token,
            conn,
            broken,
        });
    }
}

/// Runs the handler and writes as much of the response as the socket takes now.
/// Returns true when the socket failed.
fn serve(shared: &Shared, conn: &mut Connection, ready: Ready) -> bool {
    respond(shared.handler.as_ref(), &shared.stopper, conn, ready);
    conn.flush().is_err()
}

/// Runs the handler and puts the framed response in the connection's output, leaving
/// the connection ready to write it.
pub(crate) fn respond(
    handler: &dyn Handler,
    stopper: &Stopper,
    conn: &mut Connection,
    ready: Ready,
) {
    let Ready {
        request,
        keep_alive,
        announce_keep_alive,
        head_only,
        ..
    } = ready;
    let resp = call_handler(handler, request);
    let close = !keep_alive || stopper.is_stopped();
    let framing = Framing {
        head_only,
        close,
        announce_keep_alive: announce_keep_alive && !close,
    };
    response::append_owned(&mut conn.out, resp, framing);
    let after = if close {
        After::Close
    } else {
        After::KeepAlive
    };
    conn.stage = Stage::Writing(after);
}

/// The handler's response, or a 500 if it panicked or answered with a status that
/// cannot be a final response.
///
/// The one `catch_unwind` on a request's way: the worker thread (or the reactor, for an
/// immediate answer) survives any handler. A handler that keeps records (the app's
/// metrics and access log) writes them while its panic unwinds; the request carries its
/// id from here on, so its records and this 500 name the same one.
pub(crate) fn call_handler(handler: &dyn Handler, mut request: Request) -> Response {
    let id = request_id::assign(&mut request);
    match panic::catch_unwind(AssertUnwindSafe(|| handler.handle(request))) {
        Ok(resp) if (200..=599).contains(&resp.status) => resp,
        Ok(resp) => {
            log::error!(
                "request {id}: the handler answered with status {}, which is not a final status",
                resp.status
            );
            internal_error(id)
        }
        Err(_) => {
            // The panic message itself went to stderr through the panic hook.
            log::error!("request {id}: the handler panicked");
            internal_error(id)
        }
    }
}

fn internal_error(id: String) -> Response {
    Response::error(500, "internal server error").with_header("X-Request-Id", id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Method;
    use std::sync::Mutex;

    #[test]
    fn handler_answer_is_500_when_the_handler_panics() {
        let handler = |_: Request| -> Response { panic!("boom") };
        let req = Request::new(Method::Get, "/").with_header("X-Request-Id", "abc");
        let resp = call_handler(&handler, req);
        assert_eq!(resp.status, 500);
        assert_eq!(resp.body, b"{\"error\":\"internal server error\"}\n");
        assert_eq!(resp.header("x-request-id"), Some("abc"));
    }

    #[test]
    fn handler_sees_the_request_id_its_500_carries_when_the_client_sent_none() {
        let seen = Arc::new(Mutex::new(None));
        let noted = Arc::clone(&seen);
        let handler = move |req: Request| -> Response {
            *noted.lock().unwrap() = req.header("x-request-id").map(str::to_owned);
            panic!("boom")
        };
        let resp = call_handler(&handler, Request::new(Method::Get, "/"));
        assert_eq!(resp.status, 500);
        let sent = resp.header("x-request-id").map(str::to_owned);
        assert!(sent.is_some());
        assert_eq!(*seen.lock().unwrap(), sent);
    }

    #[test]
    fn handler_answer_is_500_when_the_status_is_not_final() {
        let handler = |_: Request| Response::new(101);
        assert_eq!(
            call_handler(&handler, Request::new(Method::Get, "/")).status,
            500
        );
    }

    #[test]
    fn handler_answer_is_kept_when_it_is_valid() {
        let handler = |_: Request| Response::new(204);
        assert_eq!(
            call_handler(&handler, Request::new(Method::Get, "/")).status,
            204
        );
    }
}
