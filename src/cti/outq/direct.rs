//! The Unix implementation of the client queue: non-blocking sends from the pushing thread, one
//! `client-flush` thread for the clients whose socket was full. See [`super`].

use std::io::{self, ErrorKind};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};

use super::{Chunk, PushError, QueueConfig, Sock, MAX_BATCH};
use crate::stats::CutReason;

/// How often waiting bytes are retried (by the flusher, and by [`Finisher::finish`]).
const RETRY: Duration = Duration::from_millis(2);
/// Capacity a client's waiting-bytes buffer keeps once it is empty again.
const KEEP: usize = 64 * 1024;
/// Stack of the `client-flush` thread: it only sends bytes and logs.
const FLUSHER_STACK: usize = 128 * 1024;

#[derive(Debug)]
struct State {
    /// Bytes the socket has not taken yet; `pending[sent..]` is still to go.
    pending: Vec<u8>,
    sent: usize,
    /// No more bytes go out (the connection is ending, was cut, or its socket failed).
    closed: bool,
    /// Handed to the flusher.
    stalled: bool,
    /// The last time the socket took bytes (or the client started waiting).
    progress: Instant,
}

impl State {
    fn unsent(&self) -> usize {
        self.pending.len() - self.sent
    }
}

#[derive(Debug)]
struct Inner {
    sock: Sock,
    cfg: QueueConfig,
    state: Mutex<State>,
}

/// The sending side; cheap to clone (the dispatcher and the reader each hold one).
#[derive(Debug, Clone)]
pub struct OutQueue {
    inner: Arc<Inner>,
}

/// Sends what the socket takes now, never waiting.
fn send_now(sock: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = nix::libc::MSG_DONTWAIT | nix::libc::MSG_NOSIGNAL;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = nix::libc::MSG_DONTWAIT;
    loop {
        match socket2::SockRef::from(sock).send_with_flags(bytes, flags) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends as much of the waiting bytes as the socket takes now.
    fn flush(&self, st: &mut State) {
        while st.unsent() > 0 && !st.closed {
            let end = st.pending.len().min(st.sent + MAX_BATCH);
            match send_now(&self.sock, &st.pending[st.sent..end]) {
                Ok(0) => st.closed = true,
                Ok(n) => {
                    st.sent += n;
                    st.progress = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => st.closed = true,
            }
        }
        if st.unsent() == 0 || st.closed {
            st.pending.clear();
            st.sent = 0;
            if st.pending.capacity() > KEEP {
                st.pending = Vec::new();
            }
        } else if st.sent > st.pending.len() / 2 {
            // A client that reads slowly but steadily: what went out is given back.
            st.pending.drain(..st.sent);
            st.sent = 0;
        }
    }

    /// One retry of a stalled client; false once it no longer needs the flusher.
    fn retry(&self, now: Instant) -> bool {
        let mut st = self.lock();
        self.flush(&mut st);
        if st.closed || st.unsent() == 0 {
            st.stalled = false;
            return false;
        }
        if now.saturating_duration_since(st.progress) < self.cfg.write_timeout {
            return true;
        }
        let unsent = st.unsent();
        st.closed = true;
        st.stalled = false;
        st.pending = Vec::new();
        st.sent = 0;
        drop(st);
        self.cfg.counters.cut(CutReason::WriteStalled);
        log::warn!(
            "client-{}: cut: no write progress within CTI_CLIENT_WRITE_TIMEOUT ({unsent} bytes unsent)",
            self.cfg.id
        );
        let _ = self.sock.shutdown(Shutdown::Both);
        false
    }
}

impl OutQueue {
    /// Sends `chunk` now, or queues what the socket does not take, or refuses it; never waits.
    pub fn push(&self, chunk: Chunk) -> Result<(), PushError> {
        let i = &self.inner;
        let bytes = chunk.bytes();
        let mut st = i.lock();
        if st.unsent() > 0 {
            // What is already waiting goes first.
            i.flush(&mut st);
        }
        if st.closed {
            return Err(PushError::Closed);
        }
        let mut rest = bytes;
        if st.unsent() == 0 {
            match send_now(&i.sock, bytes) {
                Ok(n) => rest = &bytes[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => {
                    st.closed = true;
                    return Err(PushError::Closed);
                }
            }
            if rest.is_empty() {
                return Ok(());
            }
        }
        let queued = st.unsent();
        if queued + rest.len() > i.cfg.limit {
            return Err(PushError::Full {
                queued,
                limit: i.cfg.limit,
            });
        }
        st.pending.extend_from_slice(rest);
        if !st.stalled {
            st.stalled = true;
            st.progress = Instant::now();
            drop(st);
            if let Some(f) = flusher() {
                let _ = f.send(self.inner.clone());
            }
        }
        Ok(())
    }

    /// Bytes queued and not yet taken by the socket.
    pub fn queued(&self) -> usize {
        self.inner.lock().unsent()
    }
}

/// Sends what is still waiting when the connection ends (a `900 BYE`, say), then refuses more.
#[derive(Debug)]
pub struct Finisher(OutQueue);

impl Finisher {
    /// Returns once everything waiting is sent, the socket failed, or it made no progress for the
    /// write timeout (the client is cut as by the flusher).
    pub fn finish(self) {
        let i = &self.0.inner;
        loop {
            {
                let mut st = i.lock();
                i.flush(&mut st);
                if st.closed || st.unsent() == 0 {
                    st.closed = true;
                    return;
                }
            }
            if !i.retry(Instant::now()) {
                i.lock().closed = true;
                return;
            }
            thread::sleep(RETRY);
        }
    }
}

/// The client's queue (no thread of its own).
pub fn start(sock: Sock, cfg: QueueConfig) -> Result<(OutQueue, Finisher), String> {
    let q = OutQueue {
        inner: Arc::new(Inner {
            sock,
            cfg,
            state: Mutex::new(State {
                pending: Vec::new(),
                sent: 0,
                closed: false,
                stalled: false,
                progress: Instant::now(),
            }),
        }),
    };
    Ok((q.clone(), Finisher(q)))
}

/// Starts the `client-flush` thread now (the server does at startup, so that it is part of the
/// baseline thread count), not at the first stalled client.
pub fn start_flusher() {
    let _ = flusher();
}

/// The process's one flusher (started on first use); `None` if its thread cannot be started (then
/// waiting bytes still go out with the client's next push, and at its end).
fn flusher() -> Option<&'static Sender<Arc<Inner>>> {
    static FLUSHER: OnceLock<Option<Sender<Arc<Inner>>>> = OnceLock::new();
    FLUSHER
        .get_or_init(|| {
            let (tx, rx) = unbounded();
            match thread::Builder::new()
                .name("client-flush".into())
                .stack_size(FLUSHER_STACK)
                .spawn(move || flush_loop(rx))
            {
                Ok(_) => Some(tx),
                Err(e) => {
                    log::error!("cannot start the client-flush thread ({e}): slow clients are only retried when they get more to send");
                    None
                }
            }
        })
        .as_ref()
}

fn flush_loop(rx: Receiver<Arc<Inner>>) {
    let mut stalled: Vec<Arc<Inner>> = Vec::new();
    loop {
        let got = if stalled.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(RETRY)
        };
        match got {
            Ok(c) => stalled.push(c),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        stalled.extend(rx.try_iter());
        let now = Instant::now();
        stalled.retain(|c| c.retry(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Counters;
    use std::io::Read;
    use std::net::TcpListener;

    /// A connected pair (server side, client side) whose server side cannot send any more: its
    /// socket buffers are filled first.
    fn full_pair() -> (Sock, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        // Fixed, small buffers on both ends: the kernel does not grow them (no autotuning).
        let c = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        c.set_recv_buffer_size(4096).unwrap();
        c.connect(&l.local_addr().unwrap().into()).unwrap();
        let c: TcpStream = c.into();
        let (s, _) = l.accept().unwrap();
        socket2::SockRef::from(&s)
            .set_send_buffer_size(4096)
            .unwrap();
        // Until a round takes nothing: loopback moves bytes on to the reader's buffer (and grows
        // it) for a moment after a send is refused.
        let chunk = vec![b'.'; 64 * 1024];
        loop {
            let mut took = 0;
            while let Ok(n) = send_now(&s, &chunk) {
                took += n;
            }
            if took == 0 {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        (Arc::new(s), c)
    }

    fn cfg(limit: usize, write_timeout: Duration) -> QueueConfig {
        QueueConfig {
            id: 1,
            limit,
            write_timeout,
            counters: Arc::new(Counters::default()),
        }
    }

    #[test]
    fn the_bound_counts_unsent_bytes_and_is_exact() {
        let (s, _c) = full_pair();
        let (q, _f) = start(s, cfg(10, Duration::from_secs(60))).unwrap();
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
        assert_eq!(q.queued(), 10);
    }

    #[test]
    fn a_reading_client_gets_everything_in_order() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let (q, f) = start(Arc::new(s), cfg(usize::MAX, Duration::from_secs(60))).unwrap();
        // More than the socket buffers hold, so that part of it waits for the flusher.
        let reader = thread::spawn(move || {
            let mut all = Vec::new();
            c.read_to_end(&mut all).unwrap();
            all
        });
        let mut want = Vec::new();
        for i in 0..2000u32 {
            let m = format!("{i:08}{}\n", "x".repeat(4000)).into_bytes();
            want.extend_from_slice(&m);
            q.push(Chunk::Owned(m)).unwrap();
        }
        f.finish();
        let sock = q.inner.sock.clone();
        drop(q);
        sock.shutdown(Shutdown::Both).unwrap();
        let got = reader.join().unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes differ");
    }

    #[test]
    fn a_failed_send_closes_the_queue() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let (q, _f) = start(Arc::new(s), cfg(1 << 20, Duration::from_secs(60))).unwrap();
        drop(c);
        // The first bytes after the peer closed are taken; its reset makes a later send fail, and
        // from then on every push is refused (the reader sees the same end on its side).
        let t = Instant::now();
        while q.push(Chunk::Static(b"x\n")) != Err(PushError::Closed) {
            assert!(t.elapsed() < Duration::from_secs(5), "never failed");
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(q.push(Chunk::Static(b"y\n")), Err(PushError::Closed));
        assert_eq!(q.queued(), 0);
    }

    #[test]
    fn a_client_without_progress_is_cut_by_the_flusher() {
        let (s, mut c) = full_pair();
        let counters = Arc::new(Counters::default());
        let mut config = cfg(1 << 20, Duration::from_millis(200));
        config.counters = counters.clone();
        let (q, _f) = start(s, config).unwrap();
        q.push(Chunk::Owned(vec![b'w'; 256 * 1024])).unwrap();
        let t = Instant::now();
        assert!(q.queued() > 0, "the socket took everything");
        while counters
            .cut_write_stalled
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0
        {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "not cut; {} bytes queued",
                q.queued()
            );
            thread::sleep(Duration::from_millis(10));
        }
        assert!(t.elapsed() >= Duration::from_millis(150), "cut too early");
        assert_eq!(q.push(Chunk::Static(b"more")), Err(PushError::Closed));
        // Its socket was shut down: the client reads its buffered bytes, then EOF.
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut all = Vec::new();
        let _ = c.read_to_end(&mut all);
    }
}
