//! Noticing when a response has been sent: a response body that calls back once, when it ends, fails or is
//! dropped (the client went away), with the data bytes it carried. The access log writes its line then, the
//! tracer ends its span.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::Body;
use crate::BoxError;

/// What to do once a response body is over.
pub trait OnBodyEnd: Send + Sync + Unpin + 'static {
    /// `sent`: the body's data bytes that went out.
    fn ended(self, sent: u64);
}

/// `body`, calling `on_end` once it is over.
pub fn watch_end(body: Body, on_end: impl OnBodyEnd) -> Body {
    WatchedBody { inner: body, on_end: Some(on_end), sent: 0 }.boxed()
}

struct WatchedBody<E: OnBodyEnd> {
    inner: Body,
    on_end: Option<E>,
    sent: u64,
}

impl<E: OnBodyEnd> WatchedBody<E> {
    fn done(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end.ended(self.sent);
        }
    }
}

impl<E: OnBodyEnd> HttpBody for WatchedBody<E> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.done();
                }
            }
            Poll::Ready(_) => self.done(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<E: OnBodyEnd> Drop for WatchedBody<E> {
    fn drop(&mut self) {
        self.done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use futures_util::StreamExt;
    use http_body_util::{Full, StreamBody};

    struct Record(Arc<AtomicU64>);

    impl OnBodyEnd for Record {
        fn ended(self, sent: u64) {
            self.0.fetch_add(sent + 1_000, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn called_once_with_the_bytes_when_read_to_the_end_or_dropped() {
        let seen = Arc::new(AtomicU64::new(0));
        let body = Full::new(Bytes::from_static(b"hello")).map_err(|never| match never {}).boxed();
        let body = watch_end(body, Record(seen.clone()));
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 5);
        assert_eq!(seen.load(Ordering::SeqCst), 1_005, "once, with 5 bytes");

        let seen = Arc::new(AtomicU64::new(0));
        let frames = futures_util::stream::iter([Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"ab")))])
            .chain(futures_util::stream::pending());
        let mut body = watch_end(BodyExt::boxed(StreamBody::new(frames)), Record(seen.clone()));
        body.frame().await.unwrap().unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 0, "not over yet");
        drop(body);
        assert_eq!(seen.load(Ordering::SeqCst), 1_002, "the client went away after 2 bytes");
    }
}
