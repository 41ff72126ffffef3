//! Body types and streaming wrappers.
//!
//! Bodies are streamed frame by frame in both directions, never buffered:
//! memory stays flat whatever the size. The wrappers here add the
//! cross-cutting limits as layers around a body:
//! - `Limited`: fails once more than N bytes went through (client
//!   `max_body_size` -> 413).
//! - `IdleTimeout`: fails when no frame arrives for a duration (Kong's
//!   `read_timeout`/`write_timeout` are "between two successive operations").
//! - `OnEnd`: runs a callback exactly once when the body reaches its end
//!   (used to return an upstream connection to the pool only when the
//!   response was fully read).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request and response the proxy handles.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body (zero-sized: boxing it allocates nothing).
pub fn empty() -> ProxyBody {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Wait for `body`'s first frame and give the body back with that frame in
/// front, or its error. (For a chunked request body: its first size line is
/// checked before anything goes upstream.)
pub async fn with_first_frame(mut body: ProxyBody) -> Result<ProxyBody, BoxError> {
    match body.frame().await {
        None => Ok(empty()),
        Some(Err(e)) => Err(e),
        Some(Ok(frame)) => Ok(Prepended {
            first: Some(frame),
            rest: body,
        }
        .boxed_unsync()),
    }
}

/// A frame already read, then the rest of the body.
struct Prepended {
    first: Option<Frame<Bytes>>,
    rest: ProxyBody,
}

impl Body for Prepended {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(frame) = this.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        Pin::new(&mut this.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let first = self
            .first
            .as_ref()
            .and_then(Frame::data_ref)
            .map_or(0, |d| d.len() as u64);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + first);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + first);
        }
        hint
    }
}

/// Box any body into a `ProxyBody`.
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// Errors raised by the wrappers, recognisable by the proxy when it maps an
/// upstream error back to a status code.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("no body data for {0:?} ({1})")]
    Idle(Duration, &'static str),
    /// The client's request body was malformed (e.g. a bad chunk size) or
    /// the client went away mid-body.
    #[error("client request body: {0}")]
    Client(String),
}

/// Finds a `BodyError` in an error's source chain.
pub fn find_body_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(b) = e.downcast_ref::<BodyError>() {
            return Some(b);
        }
        cur = e.source();
    }
    None
}

pin_project! {
    /// Fails with `BodyError::TooLarge` once more than `limit` data bytes
    /// were read.
    pub struct Limited<B> {
        #[pin]
        inner: B,
        remaining: u64,
        limit: u64,
    }
}

impl<B> Limited<B> {
    pub fn new(inner: B, limit: u64) -> Self {
        Limited {
            inner,
            remaining: limit,
            limit,
        }
    }
}

impl<B> Body for Limited<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > *this.remaining {
                        *this.remaining = 0;
                        return Poll::Ready(Some(Err(Box::new(BodyError::TooLarge {
                            limit: *this.limit,
                        }))));
                    }
                    *this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// Fails with `BodyError::Idle` when the inner body yields nothing for
    /// `timeout`. The timer restarts after every frame.
    ///
    /// The timer is armed only when the inner body has nothing ready (from
    /// that moment on), so a body whose frames are ready when polled, such
    /// as a small response that came with its head, never touches the
    /// timer wheel (nor allocates the timer: it is boxed, which also keeps
    /// this wrapper small to move).
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        sleep: Option<Pin<Box<Sleep>>>,
        armed: bool,
        timeout: Duration,
        what: &'static str,
    }
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, timeout: Duration, what: &'static str) -> Self {
        IdleTimeout {
            inner,
            sleep: None,
            armed: false,
            timeout,
            what,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(item) = this.inner.poll_frame(cx) {
            // Restart the idle period at the next wait.
            *this.armed = false;
            return Poll::Ready(item.map(|r| r.map_err(Into::into)));
        }
        if !*this.armed {
            let deadline = Instant::now() + *this.timeout;
            match this.sleep.as_mut() {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => *this.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            *this.armed = true;
        }
        let Some(sleep) = this.sleep.as_mut() else {
            return Poll::Pending;
        };
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyError::Idle(
                *this.timeout,
                this.what,
            )))));
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

pin_project! {
    /// Calls `on_end` once when the inner body ends cleanly. Dropping the
    /// body early (client went away) or an error does not call it.
    pub struct OnEnd<B, F: FnOnce()> {
        #[pin]
        inner: B,
        on_end: Option<F>,
    }
}

impl<B: Body, F: FnOnce()> OnEnd<B, F> {
    pub fn new(inner: B, on_end: F) -> Self {
        let mut this = OnEnd {
            inner,
            on_end: Some(on_end),
        };
        if this.inner.is_end_stream() {
            if let Some(f) = this.on_end.take() {
                f();
            }
        }
        this
    }
}

impl<B, F> Body for OnEnd<B, F>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    F: FnOnce(),
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let item = ready!(this.inner.as_mut().poll_frame(cx));
        match &item {
            None => {
                if let Some(f) = this.on_end.take() {
                    f();
                }
            }
            Some(Ok(_)) if this.inner.is_end_stream() => {
                if let Some(f) = this.on_end.take() {
                    f();
                }
            }
            _ => {}
        }
        Poll::Ready(item.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn chunks(parts: &[&'static str]) -> ProxyBody {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn limited_passes_up_to_the_limit_and_fails_past_it() {
        let ok = Limited::new(chunks(&["ab", "cd"]), 4).collect().await;
        assert_eq!(
            ok.map(|c| c.to_bytes()).ok(),
            Some(Bytes::from_static(b"abcd"))
        );
        let err = Limited::new(chunks(&["ab", "cde"]), 4)
            .collect()
            .await
            .err();
        let err = err.expect("must fail past the limit");
        assert!(matches!(
            find_body_error(err.as_ref()),
            Some(BodyError::TooLarge { limit: 4 })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_fires_when_no_frame_arrives() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let body = StreamBody::new(tokio_stream_from(rx));
        let mut body = Box::pin(IdleTimeout::new(body, Duration::from_secs(5), "read"));
        tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
            .await
            .ok();
        assert!(body.frame().await.expect("frame").is_ok());
        // No more frames: paused time auto-advances to the deadline.
        let err = body
            .frame()
            .await
            .expect("an error item")
            .expect_err("error");
        assert!(matches!(
            find_body_error(err.as_ref()),
            Some(BodyError::Idle(_, "read"))
        ));
        drop(tx);
    }

    fn tokio_stream_from<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    #[tokio::test]
    async fn on_end_runs_once_at_clean_end_only() {
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        let body = OnEnd::new(chunks(&["a", "b"]), move || {
            n2.fetch_add(1, Ordering::SeqCst);
        });
        let _ = body.collect().await;
        assert_eq!(n.load(Ordering::SeqCst), 1);

        let n3 = n.clone();
        let mut early = Box::pin(OnEnd::new(chunks(&["a", "b"]), move || {
            n3.fetch_add(1, Ordering::SeqCst);
        }));
        let _ = early.frame().await;
        drop(early);
        assert_eq!(n.load(Ordering::SeqCst), 1, "dropped early: not returned");
    }
}
