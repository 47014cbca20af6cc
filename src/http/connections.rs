//! Connection slots: at most MAX_CONNECTIONS connections at once, and idle ones
//! give their slot up when a new connection needs it.
//!
//! A slot is a semaphore permit, taken before `accept()`: beyond the cap, new
//! connections wait in the kernel's backlog and hold no descriptor here. A
//! connection with no request in flight (nothing sent yet, or between keep-alive
//! requests) is idle; idle connections are kept in the order they went idle, and at
//! the cap the one idle longest is closed to make room, as nginx reuses its idle
//! connections. Without that, 2,000 clients that connect and send nothing would
//! hold every slot until the header-read timeout, over and over, and a good webhook
//! would wait in the backlog behind them for several rounds of it.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// The slots of one listener.
pub(crate) struct Slots {
    permits: Arc<Semaphore>,
    idle: Mutex<Idle>,
    went_idle: Notify,
}

/// Idle connections, longest idle first (keys only grow).
#[derive(Default)]
struct Idle {
    next: u64,
    longest_first: BTreeMap<u64, CancellationToken>,
}

/// How [`Slots::acquire`] got its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Got {
    /// A slot was free.
    Free,
    /// At the cap: an idle connection was closed to make room.
    ClosedIdle,
    /// At the cap with every connection busy: waited for one to end.
    Waited,
}

impl Slots {
    /// `max` slots.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            permits: Arc::new(Semaphore::new(max)),
            idle: Mutex::default(),
            went_idle: Notify::new(),
        })
    }

    /// A slot for the next connection: a free one; else the one of the connection
    /// idle longest, closed for it; else the first to come free, whether a
    /// connection ends or goes idle.
    pub(crate) async fn acquire(self: &Arc<Self>) -> (Slot, Got) {
        let mut got = Got::Free;
        loop {
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                return (Slot::new(self.clone(), permit), got);
            }
            if self.close_longest_idle() {
                // Its task ends at once and gives the permit back.
                let permit = self.permits.clone().acquire_owned().await;
                let permit = permit.expect("the semaphore is never closed");
                return (Slot::new(self.clone(), permit), Got::ClosedIdle);
            }
            got = Got::Waited;
            tokio::select! {
                permit = self.permits.clone().acquire_owned() => {
                    let permit = permit.expect("the semaphore is never closed");
                    return (Slot::new(self.clone(), permit), got);
                }
                () = self.went_idle.notified() => {}
            }
        }
    }

    /// Closes the connection idle longest, if any is idle.
    fn close_longest_idle(&self) -> bool {
        let longest = self.idle.lock().unwrap().longest_first.pop_first();
        match longest {
            Some((_, close)) => {
                close.cancel();
                true
            }
            None => false,
        }
    }

    /// Connections idle now.
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.lock().unwrap().longest_first.len()
    }
}

/// One connection's slot; the permit goes back when the last clone of its `Arc`
/// (the connection's task, its service, a response body) is dropped.
pub(crate) struct Slot {
    slots: Arc<Slots>,
    _permit: OwnedSemaphorePermit,
    close: CancellationToken,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    in_flight: usize,
    /// Its key among the idle connections, while idle.
    idle_key: Option<u64>,
}

impl Slot {
    fn new(slots: Arc<Slots>, permit: OwnedSemaphorePermit) -> Self {
        let slot = Self {
            slots,
            _permit: permit,
            close: CancellationToken::new(),
            state: Mutex::default(),
        };
        // Idle until its first request arrives.
        slot.went_idle(&mut slot.state.lock().unwrap());
        slot
    }

    /// Resolves when the connection must close to make room for a new one.
    pub(crate) fn closed(&self) -> WaitForCancellationFuture<'_> {
        self.close.cancelled()
    }

    /// Marks a request in flight until the returned guard is dropped (with the
    /// response body, once written).
    pub(crate) fn busy(self: &Arc<Self>) -> Busy {
        let mut state = self.state.lock().unwrap();
        state.in_flight += 1;
        if let Some(key) = state.idle_key.take() {
            self.slots.idle.lock().unwrap().longest_first.remove(&key);
        }
        Busy(self.clone())
    }

    fn went_idle(&self, state: &mut SlotState) {
        let mut idle = self.slots.idle.lock().unwrap();
        let key = idle.next;
        idle.next += 1;
        idle.longest_first.insert(key, self.close.clone());
        state.idle_key = Some(key);
        drop(idle);
        self.slots.went_idle.notify_one();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let key = self.state.get_mut().unwrap().idle_key.take();
        if let Some(key) = key {
            self.slots.idle.lock().unwrap().longest_first.remove(&key);
        }
    }
}

/// A request in flight on a connection; see [`Slot::busy`].
pub(crate) struct Busy(Arc<Slot>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap();
        state.in_flight -= 1;
        if state.in_flight == 0 {
            self.0.went_idle(&mut state);
        }
    }
}

/// A response body that keeps its connection busy until hyper has written it.
pub(crate) struct Tracked<B> {
    body: B,
    _busy: Busy,
}

impl<B> Tracked<B> {
    /// `body`, with the request's guard.
    pub(crate) fn new(body: B, busy: Busy) -> Self {
        Self { body, _busy: busy }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn acquire(slots: &Arc<Slots>) -> (Arc<Slot>, Got) {
        let (slot, got) = slots.acquire().await;
        (Arc::new(slot), got)
    }

    #[tokio::test]
    async fn at_the_cap_the_connection_idle_longest_makes_room() {
        let slots = Slots::new(2);
        let (first, got) = acquire(&slots).await;
        assert_eq!(got, Got::Free);
        let (second, _) = acquire(&slots).await;
        assert_eq!(slots.idle_count(), 2);
        // The first closes when asked; its task drops its slot.
        let waiter = tokio::spawn({
            let first = first.clone();
            async move {
                first.closed().await;
            }
        });
        drop(first);
        let third = tokio::spawn({
            let slots = slots.clone();
            async move { acquire(&slots).await }
        });
        waiter.await.unwrap();
        let (_third, got) = third.await.unwrap();
        assert_eq!(got, Got::ClosedIdle);
        assert!(!second.close.is_cancelled());
    }

    #[tokio::test]
    async fn busy_connections_keep_their_slot_and_new_ones_wait_until_one_goes_idle() {
        let slots = Slots::new(1);
        let (only, _) = acquire(&slots).await;
        let busy = only.busy();
        assert_eq!(slots.idle_count(), 0);
        let next = tokio::spawn({
            let slots = slots.clone();
            async move { acquire(&slots).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !next.is_finished(),
            "waits while the only connection is busy"
        );
        // The response is written: idle again, so it makes room.
        drop(busy);
        tokio::time::timeout(Duration::from_secs(1), only.closed())
            .await
            .expect("the idle connection is asked to close");
        drop(only);
        let (_, got) = next.await.unwrap();
        assert_eq!(got, Got::ClosedIdle);
    }
}
