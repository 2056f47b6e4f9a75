//! Durable acknowledgements: a shard that must not answer before an event
//! is written (money: wins, bills, charged impressions) queues the event
//! with an [`Ack`] and awaits the [`AckWait`] that goes with it. The spool
//! writer resolves the ack once the event's bytes are in the kernel (and
//! synced, with `fsync = always`); a writer that drops an ack unresolved (a
//! failed write, a writer gone) resolves it as failed. Lock-free: one atomic
//! state and an `AtomicWaker`; the waker is a Glommio task's, which may be
//! woken from the writer thread.

use atomic_waker::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

const PENDING: u8 = 0;
const DONE: u8 = 1;
const FAILED: u8 = 2;

#[derive(Debug, Default)]
struct Cell {
    state: AtomicU8,
    waker: AtomicWaker,
}

/// The writer's side: resolve it once the event is written.
#[derive(Debug)]
pub struct Ack {
    cell: Option<Arc<Cell>>,
}

/// The shard's side: resolves to `true` once the event is written, `false`
/// if it could not be.
#[derive(Debug)]
pub struct AckWait {
    cell: Arc<Cell>,
}

/// A new pair.
pub fn pair() -> (Ack, AckWait) {
    let cell = Arc::new(Cell::default());
    (
        Ack {
            cell: Some(cell.clone()),
        },
        AckWait { cell },
    )
}

impl Ack {
    /// Resolves: `true` written, `false` failed.
    pub fn resolve(mut self, written: bool) {
        self.finish(written);
    }

    fn finish(&mut self, written: bool) {
        if let Some(c) = self.cell.take() {
            c.state
                .store(if written { DONE } else { FAILED }, Ordering::Release);
            c.waker.wake();
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        self.finish(false);
    }
}

impl Future for AckWait {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let read = |c: &Cell| match c.state.load(Ordering::Acquire) {
            PENDING => None,
            s => Some(s == DONE),
        };
        if let Some(v) = read(&self.cell) {
            return Poll::Ready(v);
        }
        self.cell.waker.register(cx.waker());
        // Resolved between the first look and the registration.
        match read(&self.cell) {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_across_threads_and_fails_when_dropped() {
        let (ack, wait) = pair();
        let t = std::thread::spawn(move || ack.resolve(true));
        assert!(futures_lite::future::block_on(wait));
        t.join().unwrap();
        let (ack, wait) = pair();
        drop(ack);
        assert!(!futures_lite::future::block_on(wait));
        let (ack, wait) = pair();
        ack.resolve(false);
        assert!(!futures_lite::future::block_on(wait));
    }
}
