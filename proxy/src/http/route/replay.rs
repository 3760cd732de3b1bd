//! A request body that can be sent more than once: to retries and to mirrors. The client's body is read once,
//! by whichever copy leads (the current attempt), and what it reads is kept, up to [`REPLAY_LIMIT`], for the
//! copies that follow (mirrors) or come later (retries). A body longer than the limit streams on unchanged but
//! can no longer be replayed: the request is not retried, and a mirror still reading it ends with an error.
//!
//! The limit is Envoy's default per-request buffer (`per_request_buffer_limit_bytes`, 1 MiB).

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use crate::BoxError;
use crate::http::Body;

/// Most bytes of a request body kept for replay.
pub const REPLAY_LIMIT: usize = 1 << 20;

/// The request body went past [`REPLAY_LIMIT`] while this copy still needed what was not kept.
#[derive(Debug, thiserror::Error)]
#[error("request body too large to replay")]
pub struct TooLargeToReplay;

/// The client's body failed; every copy ends with this.
#[derive(Debug, thiserror::Error)]
#[error("request body failed: {0}")]
pub struct SourceFailed(String);

enum Piece {
    Data(Bytes),
    Trailers(HeaderMap),
}

struct Shared {
    source: Option<Body>,
    /// Pieces kept, from the start.
    kept: Vec<Piece>,
    kept_bytes: usize,
    /// Pieces read from the source (more than `kept` once the limit was passed).
    read: usize,
    overflowed: bool,
    ended: bool,
    failed: Option<String>,
    /// The copy that may read the source: a generation handed out by [`Replay::leader`], or [`FOLLOWERS`].
    leader: u64,
    generations: u64,
    waiting: Vec<Waker>,
    hint: SizeHint,
}

/// The generation of followers; when it leads (the leader went away before the end), followers read the source.
const FOLLOWERS: u64 = u64::MAX;

/// A handle on a replayable body: hands out copies.
#[derive(Clone)]
pub struct Replay {
    /// `None`: the body was over before it started (most requests: `GET`s). Every copy is then an empty body,
    /// which neither allocates nor locks, and which HTTP/2 sends with the request's headers (a copy of a body
    /// that might go on costs hyper a task per request to send it).
    shared: Option<Arc<Mutex<Shared>>>,
}

impl Replay {
    pub fn new(body: Body) -> Self {
        if body.is_end_stream() {
            return Self { shared: None };
        }
        let hint = body.size_hint();
        let shared = Shared {
            source: Some(body),
            kept: Vec::new(),
            kept_bytes: 0,
            read: 0,
            overflowed: false,
            ended: false,
            failed: None,
            leader: 0,
            generations: 0,
            waiting: Vec::new(),
            hint,
        };
        Self { shared: Some(Arc::new(Mutex::new(shared))) }
    }

    fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
        shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A copy from the start that reads the source when it gets there: the next attempt.
    pub fn leader(&self) -> Body {
        let Some(shared) = &self.shared else { return Body::default() };
        let mut state = Self::lock(shared);
        state.generations += 1;
        state.leader = state.generations;
        ReplayBody { shared: shared.clone(), position: 0, generation: state.leader }.boxed()
    }

    /// A copy from the start that only ever reads what the leader read: a mirror.
    pub fn follower(&self) -> Body {
        let Some(shared) = &self.shared else { return Body::default() };
        ReplayBody { shared: shared.clone(), position: 0, generation: FOLLOWERS }.boxed()
    }

    /// Whether a new copy could still be sent whole.
    pub fn is_replayable(&self) -> bool {
        let Some(shared) = &self.shared else { return true };
        let state = Self::lock(shared);
        !state.overflowed && state.failed.is_none()
    }
}

struct ReplayBody {
    shared: Arc<Mutex<Shared>>,
    position: usize,
    generation: u64,
}

/// A leader dropped before the end (its upstream answered without reading everything) hands the source over to
/// the followers, so a mirror still gets the whole body.
impl Drop for ReplayBody {
    fn drop(&mut self) {
        let mut shared = self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if shared.leader == self.generation && self.generation != FOLLOWERS {
            shared.leader = FOLLOWERS;
            shared.waiting.drain(..).for_each(Waker::wake);
        }
    }
}

type Polled = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

impl HttpBody for ReplayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
        let this = self.get_mut();
        let mut shared = this.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(message) = &shared.failed {
            return Poll::Ready(Some(Err(SourceFailed(message.clone()).into())));
        }
        if let Some(piece) = shared.kept.get(this.position) {
            this.position += 1;
            return Poll::Ready(Some(Ok(frame(piece))));
        }
        if this.position < shared.read {
            // Read by the leader but not kept: past the limit.
            return Poll::Ready(Some(Err(TooLargeToReplay.into())));
        }
        if shared.ended {
            return Poll::Ready(None);
        }
        if this.generation != shared.leader {
            shared.waiting.push(cx.waker().clone());
            return Poll::Pending;
        }
        let polled = match shared.source.as_mut() {
            Some(source) => Pin::new(source).poll_frame(cx),
            None => Poll::Ready(None),
        };
        let result = read_from_source(&mut shared, polled);
        if result.is_ready() {
            this.position = shared.read;
            shared.waiting.drain(..).for_each(Waker::wake);
        }
        result
    }

    fn is_end_stream(&self) -> bool {
        let shared = self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        shared.ended && self.position >= shared.read && shared.failed.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // Read once, before the first frame, by HTTP/1 framing (Content-Length or chunked).
        if self.position == 0 { self.shared.lock().map(|s| s.hint).unwrap_or_default() } else { SizeHint::default() }
    }
}

/// Keeps what the leader read from the source (while under the limit) and passes it on.
fn read_from_source(shared: &mut Shared, polled: Poll<Option<Result<Frame<Bytes>, BoxError>>>) -> Polled {
    match polled {
        Poll::Pending => Poll::Pending,
        Poll::Ready(None) => {
            shared.ended = true;
            shared.source = None;
            Poll::Ready(None)
        }
        Poll::Ready(Some(Err(err))) => {
            shared.failed = Some(err.to_string());
            shared.source = None;
            Poll::Ready(Some(Err(err)))
        }
        Poll::Ready(Some(Ok(frame))) => {
            shared.read += 1;
            let piece = match frame.data_ref() {
                Some(data) => Piece::Data(data.clone()),
                None => Piece::Trailers(frame.trailers_ref().cloned().unwrap_or_default()),
            };
            let size = match &piece {
                Piece::Data(data) => data.len(),
                Piece::Trailers(_) => 0,
            };
            if !shared.overflowed && shared.kept_bytes + size <= REPLAY_LIMIT {
                shared.kept_bytes += size;
                shared.kept.push(piece);
            } else if !shared.overflowed {
                // Nobody can be sent the whole body again: free what was kept.
                shared.overflowed = true;
                shared.kept = Vec::new();
                shared.kept_bytes = 0;
            }
            Poll::Ready(Some(Ok(frame)))
        }
    }
}

fn frame(piece: &Piece) -> Frame<Bytes> {
    match piece {
        Piece::Data(data) => Frame::data(data.clone()),
        Piece::Trailers(trailers) => Frame::trailers(trailers.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn body_of(chunks: Vec<&'static [u8]>) -> Body {
        let frames = chunks.into_iter().map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from_static(c))));
        StreamBody::new(futures_util::stream::iter(frames)).boxed()
    }

    async fn text(body: Body) -> Result<String, BoxError> {
        Ok(String::from_utf8_lossy(&body.collect().await?.to_bytes()).into_owned())
    }

    #[tokio::test]
    async fn every_copy_gets_the_whole_body() {
        let replay = Replay::new(body_of(vec![b"hello ", b"world"]));
        let mirror = replay.follower();
        assert_eq!(text(replay.leader()).await.unwrap(), "hello world");
        assert!(replay.is_replayable());
        assert_eq!(text(replay.leader()).await.unwrap(), "hello world", "a retry");
        assert_eq!(text(mirror).await.unwrap(), "hello world", "a mirror reading after the leader");
    }

    #[tokio::test]
    async fn a_follower_waits_for_the_leader() {
        let replay = Replay::new(body_of(vec![b"a", b"b"]));
        let mirror = tokio::spawn(text(replay.follower()));
        tokio::task::yield_now().await;
        assert!(!mirror.is_finished(), "nothing read yet");
        assert_eq!(text(replay.leader()).await.unwrap(), "ab");
        assert_eq!(mirror.await.unwrap().unwrap(), "ab");
    }

    #[tokio::test]
    async fn followers_read_on_when_the_leader_goes_away() {
        let replay = Replay::new(body_of(vec![b"a", b"b", b"c"]));
        let mirror = tokio::spawn(text(replay.follower()));
        let mut leader = replay.leader();
        let first = leader.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "a");
        drop(leader);
        assert_eq!(mirror.await.unwrap().unwrap(), "abc");
        assert_eq!(text(replay.leader()).await.unwrap(), "abc", "a later retry still gets it all");
    }

    #[tokio::test]
    async fn a_body_past_the_limit_streams_once_and_is_not_replayable() {
        let big: &'static [u8] = Box::leak(vec![b'x'; REPLAY_LIMIT].into_boxed_slice());
        let replay = Replay::new(body_of(vec![big, b"y"]));
        let mirror = replay.follower();
        assert_eq!(text(replay.leader()).await.unwrap().len(), REPLAY_LIMIT + 1, "the leader gets everything");
        assert!(!replay.is_replayable());
        assert!(text(mirror).await.unwrap_err().is::<TooLargeToReplay>());
    }

    #[tokio::test]
    async fn an_empty_body_is_replayable_and_keeps_its_length() {
        let replay = Replay::new(Full::new(Bytes::new()).map_err(|never| match never {}).boxed());
        let copy = replay.leader();
        assert!(copy.is_end_stream());
        assert_eq!(copy.size_hint().exact(), Some(0));
        assert!(replay.is_replayable());
        assert!(replay.follower().is_end_stream(), "a mirror's copy too");
        let sized = Replay::new(Full::new(Bytes::from_static(b"abc")).map_err(|never| match never {}).boxed());
        assert_eq!(sized.leader().size_hint().exact(), Some(3), "Content-Length survives");
    }
}
