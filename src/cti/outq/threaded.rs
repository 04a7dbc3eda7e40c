//! The writer-thread implementation of the client queue (everywhere but Unix): see [`super`].

use std::io::{ErrorKind, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{unbounded, Receiver, Sender, TryRecvError};

use super::{Chunk, PushError, QueueConfig, Sock, MAX_BATCH};
use crate::stats::CutReason;

/// Stack of a writer thread: it only copies bytes to the socket.
pub const WRITER_STACK: usize = 64 * 1024;

/// What [`OutReceiver::next`] hands the writer.
#[derive(Debug)]
pub enum Batch {
    /// One message alone: its bytes are written as they are.
    One(Chunk),
    /// Several messages, appended to the caller's buffer.
    Buffered,
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
struct OutReceiver {
    rx: Receiver<Chunk>,
    queued: Arc<AtomicUsize>,
    /// A message taken from the channel that did not fit the last batch.
    carry: Option<Chunk>,
}

/// A queue that holds at most `limit` unwritten bytes.
fn out_queue(limit: usize) -> (OutQueue, OutReceiver) {
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
    #[cfg(test)]
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

/// Waits for the writer to send what is still queued (a `900 BYE`, say); it ends once every queue
/// handle is dropped. A client that does not read costs at most the write timeout here.
#[derive(Debug)]
pub struct Finisher(JoinHandle<()>);

impl Finisher {
    pub fn finish(self) {
        let _ = self.0.join();
    }
}

/// Nothing to start here (a writer thread per client instead).
pub fn start_flusher() {}

/// The client's queue and its writer thread (`client-N-w`).
pub fn start(sock: Sock, cfg: QueueConfig) -> Result<(OutQueue, Finisher), String> {
    let (queue, rx) = out_queue(cfg.limit);
    let _ = sock.set_write_timeout(Some(cfg.write_timeout));
    let id = cfg.id;
    let h = thread::Builder::new()
        .name(format!("client-{id}-w"))
        .stack_size(WRITER_STACK)
        .spawn(move || writer(sock, rx, cfg))
        .map_err(|e| format!("cannot start its writer thread ({e})"))?;
    Ok((queue, Finisher(h)))
}

/// The writer thread: batches from the queue, one `write_all` each.
fn writer(sock: Sock, mut rx: OutReceiver, cfg: QueueConfig) {
    let id = cfg.id;
    // Empty until several messages are waiting at once; a message alone is written from its own
    // bytes.
    let mut batch = Vec::new();
    while let Some(next) = rx.next(&mut batch) {
        let bytes = match &next {
            Batch::One(chunk) => chunk.bytes(),
            Batch::Buffered => &batch[..],
        };
        if let Err(e) = (&*sock).write_all(bytes) {
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                cfg.counters.cut(CutReason::WriteStalled);
                log::warn!(
                    "client-{id}: cut: no write progress within CTI_CLIENT_WRITE_TIMEOUT ({} bytes unsent)",
                    bytes.len()
                );
            } else {
                log::info!("client-{id}: write failed ({e}): closing");
            }
            let _ = sock.shutdown(Shutdown::Both);
            return;
        }
        rx.written(bytes.len());
        batch.clear();
        if batch.capacity() > 64 * 1024 {
            batch = Vec::new();
        }
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
