//! A one-shot reply: one value from one thread to the one thread waiting for it, with a deadline.
//!
//! Core (no I/O). Used for the questions a client thread asks and waits on (is this user logged in,
//! register me, check these credentials): a `Mutex` and a `Condvar` in one small allocation. A
//! `crossbeam_channel::bounded(1)` does the same job in a block of several hundred bytes (its fields
//! are padded to cache lines), and a client thread that frees three of those per login keeps them in
//! glibc's per-thread cache for as long as it lives, idle (docs/PERFORMANCE.md).

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

#[derive(Debug)]
struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

#[derive(Debug)]
struct State<T> {
    value: Option<T>,
    /// The Reply is gone (sent or dropped unsent): nothing more can come. Set under the lock, so
    /// the waiter sees it the moment it is woken (the Arc's count drops only after `Drop::drop`
    /// has returned, which a woken waiter could see too early and wait for its deadline).
    closed: bool,
}

/// The answering side.
#[derive(Debug)]
pub struct Reply<T>(Arc<Slot<T>>);

/// The waiting side.
#[derive(Debug)]
pub struct Waiter<T>(Arc<Slot<T>>);

pub fn oneshot<T>() -> (Reply<T>, Waiter<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State {
            value: None,
            closed: false,
        }),
        ready: Condvar::new(),
    });
    (Reply(slot.clone()), Waiter(slot))
}

impl<T> Reply<T> {
    /// Hands `value` over (never waits). If nobody waits any more it is simply dropped.
    pub fn send(self, value: T) {
        self.0
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .value = Some(value);
        self.0.ready.notify_one();
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        // Wakes the waiter, so that an unsent reply's end is seen at once.
        self.0
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.0.ready.notify_one();
    }
}

impl<T> Waiter<T> {
    /// The value, once sent; `None` if `deadline` passes first or the reply was dropped unsent.
    pub fn recv_deadline(self, deadline: Instant) -> Option<T> {
        let mut v = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(value) = v.value.take() {
                return Some(value);
            }
            if v.closed {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            v = self
                .0
                .ready
                .wait_timeout(v, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_sent_value_arrives_across_threads() {
        let (r, w) = oneshot();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            r.send(7);
        });
        assert_eq!(
            w.recv_deadline(Instant::now() + Duration::from_secs(5)),
            Some(7)
        );
        t.join().unwrap();
    }

    #[test]
    fn the_deadline_ends_the_wait() {
        let (_r, w) = oneshot::<u8>();
        let t = Instant::now();
        assert_eq!(w.recv_deadline(t + Duration::from_millis(50)), None);
        assert!(t.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_reply_dropped_unsent_ends_the_wait_at_once() {
        let (r, w) = oneshot::<u8>();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(r);
        });
        let start = Instant::now();
        assert_eq!(w.recv_deadline(start + Duration::from_secs(10)), None);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "waited for the deadline"
        );
        t.join().unwrap();
    }
}
