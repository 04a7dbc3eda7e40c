//! One client's outbound queue: bounded in **bytes**, drained in as few `write` calls as the socket
//! takes.
//!
//! Core of the delivery rule "a client that reads never loses a notification": the dispatcher and
//! the client's reader push whole messages (notifications, replies) with [`OutQueue::push`], which
//! never waits; the client's writer thread takes everything queued at once with
//! [`OutReceiver::next_batch`] and writes it in one call. The bound (`CTI_CLIENT_QUEUE_BYTES`) counts
//! bytes pushed and not yet written; a push that would pass it fails with [`PushError::Full`] and the
//! caller cuts the client. A message is never split or dropped silently: it is queued whole or refused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Sender, TryRecvError};

/// Most bytes the writer hands to one `write` call.
pub const MAX_BATCH: usize = 256 * 1024;

/// What [`OutReceiver::next`] hands the writer.
#[derive(Debug)]
pub enum Batch {
    /// One message alone: its bytes are written as they are.
    One(Chunk),
    /// Several messages, appended to the caller's buffer.
    Buffered,
}

/// A message for the client: a fixed reply or owned notification bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl Chunk {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Static(b) => b,
            Chunk::Owned(b) => b,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Queued bytes would pass the bound: the client is not reading.
    Full { queued: usize, limit: usize },
    /// The writer is gone (the connection is closing).
    Closed,
}

/// The sending side; cheap to clone (the dispatcher and the reader each hold one).
#[derive(Debug, Clone)]
pub struct OutQueue {
    tx: Sender<Chunk>,
    queued: Arc<AtomicUsize>,
    limit: usize,
}

/// The writer's side.
#[derive(Debug)]
pub struct OutReceiver {
    rx: Receiver<Chunk>,
    queued: Arc<AtomicUsize>,
    /// A message taken from the channel that did not fit the last batch.
    carry: Option<Chunk>,
}

/// A queue that holds at most `limit` unwritten bytes.
pub fn out_queue(limit: usize) -> (OutQueue, OutReceiver) {
    let (tx, rx) = unbounded();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        OutQueue {
            tx,
            queued: queued.clone(),
            limit,
        },
        OutReceiver {
            rx,
            queued,
            carry: None,
        },
    )
}

impl OutQueue {
    /// Queues `chunk` whole, or refuses it; never waits.
    pub fn push(&self, chunk: Chunk) -> Result<(), PushError> {
        let len = chunk.bytes().len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > self.limit {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return Err(PushError::Full {
                queued: before,
                limit: self.limit,
            });
        }
        self.tx.send(chunk).map_err(|_| {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            PushError::Closed
        })
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

impl OutReceiver {
    /// Waits for at least one message, then appends to `buf` everything already queued (up to
    /// [`MAX_BATCH`] bytes, never splitting a message). False when every sender is gone and nothing
    /// is left.
    pub fn next_batch(&mut self, buf: &mut Vec<u8>) -> bool {
        match self.next(buf) {
            None => false,
            Some(Batch::One(c)) => {
                buf.extend_from_slice(c.bytes());
                true
            }
            Some(Batch::Buffered) => true,
        }
    }

    /// As [`OutReceiver::next_batch`], but a message that is alone in the queue is handed over as it
    /// is, to be written without copying (the common case: the dispatcher pushes everything one AMI
    /// read brought for this agent as one message).
    pub fn next(&mut self, buf: &mut Vec<u8>) -> Option<Batch> {
        let first = match self.carry.take() {
            Some(c) => c,
            None => self.rx.recv().ok()?,
        };
        let mut next = match self.rx.try_recv() {
            Ok(c) => c,
            Err(_) => return Some(Batch::One(first)),
        };
        buf.extend_from_slice(first.bytes());
        loop {
            if buf.len() + next.bytes().len() > MAX_BATCH {
                self.carry = Some(next);
                break;
            }
            buf.extend_from_slice(next.bytes());
            if buf.len() >= MAX_BATCH {
                break;
            }
            match self.rx.try_recv() {
                Ok(c) => next = c,
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
            }
        }
        Some(Batch::Buffered)
    }

    /// `n` bytes of the last batch were written: they no longer count against the bound.
    pub fn written(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_counts_bytes_and_is_exact() {
        let (q, mut rx) = out_queue(10);
        assert_eq!(q.push(Chunk::Owned(vec![b'a'; 6])), Ok(()));
        assert_eq!(
            q.push(Chunk::Static(b"bcde")),
            Ok(()),
            "exactly at the bound"
        );
        assert_eq!(
            q.push(Chunk::Static(b"f")),
            Err(PushError::Full {
                queued: 10,
                limit: 10
            }),
            "one byte over"
        );
        let mut buf = Vec::new();
        assert!(rx.next_batch(&mut buf));
        assert_eq!(buf, b"aaaaaabcde", "everything queued comes in one batch");
        rx.written(buf.len());
        assert_eq!(q.queued(), 0);
        assert_eq!(
            q.push(Chunk::Static(b"f")),
            Ok(()),
            "room again once written"
        );
    }

    #[test]
    fn batches_never_split_a_message_and_keep_order() {
        let (q, mut rx) = out_queue(usize::MAX);
        let msg = vec![b'x'; MAX_BATCH / 3 + 1];
        for i in 0..7u8 {
            let mut m = msg.clone();
            m[0] = i;
            q.push(Chunk::Owned(m)).unwrap();
        }
        drop(q);
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        while rx.next_batch(&mut buf) {
            assert!(buf.len() <= MAX_BATCH);
            assert_eq!(buf.len() % msg.len(), 0, "whole messages only");
            seen.extend(buf.chunks(msg.len()).map(|m| m[0]));
            rx.written(buf.len());
            buf.clear();
        }
        assert_eq!(seen, (0..7).collect::<Vec<u8>>());
    }

    #[test]
    fn a_closed_writer_refuses_and_gives_the_bytes_back() {
        let (q, rx) = out_queue(100);
        drop(rx);
        assert_eq!(q.push(Chunk::Static(b"abc")), Err(PushError::Closed));
        assert_eq!(q.queued(), 0);
    }
}
