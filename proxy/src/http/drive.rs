//! Running a served connection to its end, shut down gracefully when the proxy drains or the connection falls
//! idle.
//!
//! The connection's task wakes several times per request; the two shutdown signals almost never fire. Made
//! and polled at every wake-up they cost about 2 % of an HTTP/1.1 request's instructions (callgrind), so they
//! are polled under a waker of their own and only when it fired.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

use super::timeouts::connection::Activity;
use crate::drain::ConnectionWatch;

/// Runs `connection` to its end, calling `shutdown` once when the proxy drains or `activity` says it is idle.
pub(super) async fn drive<C, E>(
    mut connection: Pin<Box<C>>,
    shutdown: fn(Pin<&mut C>),
    activity: &Activity,
    mut watch: ConnectionWatch,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let draining = pin!(watch.draining());
    let idle = pin!(activity.idle_expired());
    let mut signals = Signals::new(draining, idle);
    let result = std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        if signals.fired(cx) {
            shutdown(connection.as_mut());
            // Polled again so that it starts closing (and registers for what that waits on).
            return connection.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await;
    if let Err(err) = result {
        tracing::debug!(error = %err, "connection ended with an error");
    }
}

/// Two signals, polled only when one of them woke the task; `fired` is true once, when the first completes.
struct Signals<A, B> {
    first: Pin<A>,
    second: Pin<B>,
    flag: Arc<Flag>,
    waker: Waker,
    done: bool,
}

impl<A, B> Signals<A, B>
where
    A: std::ops::DerefMut<Target: Future<Output = ()>>,
    B: std::ops::DerefMut<Target: Future<Output = ()>>,
{
    fn new(first: Pin<A>, second: Pin<B>) -> Self {
        // Set: both are polled the first time, which registers them.
        let flag = Arc::new(Flag { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        Self { first, second, waker: Waker::from(flag.clone()), flag, done: false }
    }

    fn fired(&mut self, cx: &Context<'_>) -> bool {
        if self.done {
            return false;
        }
        self.flag.task.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return false;
        }
        let mut own = Context::from_waker(&self.waker);
        self.done = self.first.as_mut().poll(&mut own).is_ready() || self.second.as_mut().poll(&mut own).is_ready();
        self.done
    }
}

/// The signals' waker: notes that they are to be polled and wakes the connection's task.
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Notify;

    /// A connection that never ends on its own and counts how often it is polled, until shut down.
    struct Endless {
        polls: usize,
        shut: bool,
    }

    impl Future for Endless {
        type Output = Result<(), std::io::Error>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            self.polls += 1;
            if self.shut {
                return Poll::Ready(Ok(()));
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    /// A connection that waits for nothing of its own (an idle keep-alive one) and ends once shut down.
    struct Quiet {
        shut: bool,
    }

    impl Future for Quiet {
        type Output = Result<(), std::io::Error>;
        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
            if self.shut { Poll::Ready(Ok(())) } else { Poll::Pending }
        }
    }

    #[tokio::test]
    async fn a_quiet_connection_is_shut_down_when_the_proxy_drains() {
        let drain = crate::drain::Drain::new();
        let activity = Activity::new();
        let connection = Box::pin(Quiet { shut: false });
        let driving = tokio::spawn({
            let watch = drain.watcher();
            async move { drive(connection, |mut c| c.shut = true, &activity, watch).await }
        });
        // Only the drain's wake-up can get the connection polled again.
        tokio::task::yield_now().await;
        assert!(drain.finish(std::time::Duration::from_secs(5)).await, "the connection was never shut down");
        driving.await.unwrap();
    }

    #[tokio::test]
    async fn a_signal_that_fires_late_still_shuts_the_connection_down_once() {
        let notify = Arc::new(Notify::new());
        let signal = notify.clone();
        let mut signals =
            Signals::new(Box::pin(async move { signal.notified().await }), Box::pin(std::future::pending()));
        let mut connection = Box::pin(Endless { polls: 0, shut: false });
        let mut shutdowns = 0;
        let ended = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            assert!(connection.polls < 10_000, "the signal was never seen");
            // The connection woke itself 100 times before the signal fires.
            if connection.polls == 100 {
                notify.notify_one();
            }
            if signals.fired(cx) {
                shutdowns += 1;
                connection.shut = true;
            }
            Poll::Pending
        });
        ended.await.unwrap();
        assert_eq!(shutdowns, 1);
        assert!(connection.polls > 100, "polled {} times", connection.polls);
    }
}
