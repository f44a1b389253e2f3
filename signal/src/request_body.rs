//! Limits on request bodies that act before and while a body is read (issue
//! #22: requests that declared a body and never sent it held their connection
//! forever, and a declared 99 GB `Content-Length` was not refused up front):
//!
//! - a declared `Content-Length` over [`MAX_BODY_BYTES`] is answered `413`
//!   `payload_too_large` at once, without reading the body;
//! - a body must arrive completely within [`Config::body_read_timeout`] of the
//!   end of its header, with no pause longer than
//!   [`Config::body_idle_timeout`]; otherwise the request is answered `408`
//!   `request_timeout`.
//!
//! Both answers carry `connection: close`, so the connection (and its slot,
//! see [`crate::listen`]) is freed. Requests without a body pass untouched.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::config::Config;
use crate::error::ApiError;

/// Largest accepted request body (bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The body deadlines, taken from [`Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDeadlines {
    /// Longest time to receive the whole body.
    pub total: Duration,
    /// Longest pause between two pieces of it.
    pub idle: Duration,
}

impl BodyDeadlines {
    /// The deadlines of `config`.
    pub fn from_config(config: &Config) -> Self {
        BodyDeadlines {
            total: config.body_read_timeout,
            idle: config.body_idle_timeout,
        }
    }
}

/// Middleware: refuses an over-limit declared body, and times the body out.
pub async fn guard(State(deadlines): State<BodyDeadlines>, req: Request, next: Next) -> Response {
    if declared_length(&req).is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return closing(ApiError::PayloadTooLarge.into_response());
    }
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| timed(body, deadlines, Arc::clone(&timed_out)));
    let response = next.run(req).await;
    if timed_out.load(Ordering::Relaxed) {
        tracing::debug!("request body not received in time");
        return closing(ApiError::RequestTimeout.into_response());
    }
    response
}

/// The `Content-Length` the request declares (none, or unreadable: hyper has
/// already refused malformed ones).
fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Marks `response` as the last one on its connection.
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// `body`, failing (and setting `timed_out`) once a deadline passes.
fn timed(body: Body, deadlines: BodyDeadlines, timed_out: Arc<AtomicBool>) -> Body {
    let now = Instant::now();
    Body::new(TimedBody {
        inner: body,
        total: Box::pin(tokio::time::sleep_until(now + deadlines.total)),
        idle: Box::pin(tokio::time::sleep_until(now + deadlines.idle)),
        idle_len: deadlines.idle,
        timed_out,
    })
}

/// A request body with a total and an idle deadline.
struct TimedBody {
    inner: Body,
    total: Pin<Box<Sleep>>,
    idle: Pin<Box<Sleep>>,
    idle_len: Duration,
    timed_out: Arc<AtomicBool>,
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            let next = Instant::now() + this.idle_len;
            this.idle.as_mut().reset(next);
            return Poll::Ready(frame);
        }
        if this.total.as_mut().poll(cx).is_ready() || this.idle.as_mut().poll(cx).is_ready() {
            this.timed_out.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(axum::Error::new("request body timeout"))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
