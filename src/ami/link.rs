//! The `ami-link` thread: one TCP connection to Asterisk at a time, forever.
//!
//! Shell around [`Decoder`] and [`Session`]: connect (host names resolved, IPv4 and IPv6), read,
//! decode, hand frames to the dispatcher, write actions, reconnect with capped exponential backoff.
//! Exactly one session exists at a time: the thread finishes one before it opens the next.
//!
//! One ordered channel carries everything to the dispatcher: `Up`, the frames of each socket read as
//! one batch, `Lost`, `Down` ([`AmiInput`]), so the dispatcher sees a session's end exactly between
//! its last frame and the next session's first. It never waits on anything but its socket: the
//! channel is bounded in **bytes** (`MANAGER_QUEUE_BYTES`, counted with [`Frame::cost`]) by
//! [`Backlog`], not by blocking. When a batch would pass the bound it is dropped and counted, and so
//! is every batch until the dispatcher has worked the queue down to half the bound; then `Lost` is
//! sent and the channel list is asked for, so that the dispatcher resynchronises the call state
//! instead of carrying on with holes. Commands (Originate) arrive on a channel and are written by
//! this thread only. The socket is read with a short timeout ([`POLL`]) so commands, Ping and
//! shutdown are handled between reads.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::dialect::Dialect;
use super::frame::{Decoder, Frame, Limits};
use super::session::{Out, Session, SessionConfig};
use super::OrigRequest;
use crate::logging::Throttle;
use crate::stats::{self, Counters};

/// Longest wait in `read` before commands, Ping and shutdown are looked at.
pub const POLL: Duration = Duration::from_millis(50);

/// What the link tells the dispatcher, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmiInput {
    /// Logged in to a new session.
    Up { dialect: Dialect, version: String },
    /// Everything decoded from one socket read; `cost` is what it counts against the bound.
    Frames { frames: Vec<Frame>, cost: usize },
    /// `frames` frames were dropped at the bound; the channel list has been asked for.
    Lost { frames: u64 },
    /// The session ended.
    Down,
}

/// Bytes of frames sent to the dispatcher and not yet worked off; shared by both threads. Worked-off
/// batches go back to the link thread ([`Backlog::recycled`]), so that a frame's memory is freed by
/// the thread that allocated it (no cross-thread `free`, which costs the allocator a lock) and a
/// batch's `Vec` is used again.
#[derive(Debug, Clone)]
pub struct Backlog {
    bytes: Arc<AtomicUsize>,
    spent_tx: Sender<Vec<Frame>>,
    spent_rx: Receiver<Vec<Frame>>,
}

/// Worked-off batches waiting to go back to the link thread, at most (the link takes them back
/// at least every [`POLL`]); more are dropped where they are.
const SPENT_BATCHES: usize = 4;

impl Default for Backlog {
    fn default() -> Self {
        let (spent_tx, spent_rx) = crossbeam_channel::bounded(SPENT_BATCHES);
        Backlog {
            bytes: Arc::default(),
            spent_tx,
            spent_rx,
        }
    }
}

impl Backlog {
    pub fn get(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
    pub fn add(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::AcqRel);
    }
    /// The dispatcher is done with a batch of this cost; its frames go back to the link thread.
    pub fn done(&self, n: usize, frames: Vec<Frame>) {
        self.bytes.fetch_sub(n, Ordering::AcqRel);
        // Full (the link is between reads): dropped here instead; never waits.
        let _ = self.spent_tx.try_send(frames);
    }
    /// An empty batch to fill: a worked-off one (its frames freed here) or a new one.
    pub fn recycled(&self) -> Vec<Frame> {
        let mut batch = self.spent_rx.try_recv().unwrap_or_default();
        batch.clear();
        while let Ok(more) = self.spent_rx.try_recv() {
            drop(more);
        }
        batch
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmiCommand {
    Originate { ext: String, request: OrigRequest },
}

#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub host: String,
    pub port: u16,
    pub session: SessionConfig,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A session that lasted this long resets the backoff.
    pub stable_after: Duration,
    pub connect_timeout: Duration,
    pub limits: Limits,
}

impl LinkConfig {
    pub fn new(host: &str, port: u16, session: SessionConfig) -> Self {
        LinkConfig {
            host: host.to_string(),
            port,
            session,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(1),
            limits: Limits::default(),
        }
    }
}

pub struct LinkChannels {
    pub input: Sender<AmiInput>,
    pub backlog: Backlog,
    /// `MANAGER_QUEUE_BYTES`.
    pub queue_bytes: usize,
    pub counters: Arc<Counters>,
    pub commands: Receiver<AmiCommand>,
    pub shutdown: Receiver<()>,
    /// `--record-ami`: every byte received goes here (written by the `ami-record` thread).
    pub record: Option<Sender<Vec<u8>>>,
}

/// Capped exponential backoff: min, 2·min, 4·min, … max.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

fn connect(cfg: &LinkConfig) -> Result<(TcpStream, SocketAddr), String> {
    let addrs: Vec<SocketAddr> = (cfg.host.as_str(), cfg.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", cfg.host))?
        .collect();
    let mut last = format!("{} has no address", cfg.host);
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, cfg.connect_timeout) {
            Ok(s) => return Ok((s, addr)),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// `--check-config --connect`: one login to the manager (then `Logoff`), within `timeout`. Ok: the
/// banner's version and dialect; Err: what went wrong, in words.
pub fn try_login(cfg: &LinkConfig, timeout: Duration) -> Result<(String, Dialect), String> {
    let (mut sock, addr) = connect(cfg)?;
    let _ = sock.set_read_timeout(Some(POLL));
    let _ = sock.set_write_timeout(Some(timeout));
    let started = Instant::now();
    let mut session = Session::new(cfg.session.clone(), 1, started);
    let mut decoder = Decoder::new(cfg.limits);
    let mut buf = vec![0u8; 16 * 1024];
    while started.elapsed() < timeout {
        let mut outs = match sock.read(&mut buf) {
            Ok(0) => return Err(format!("{addr} closed the connection")),
            Ok(n) => {
                decoder.push(&buf[..n]);
                let mut outs = Vec::new();
                while let Some(item) = decoder.next_item() {
                    outs.extend(session.on_item(item));
                }
                outs
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => vec![],
            Err(e) => return Err(format!("{addr}: {e}")),
        };
        outs.extend(session.tick(Instant::now()));
        for out in outs {
            match out {
                Out::Send(bytes) if !session.logged_in() => {
                    sock.write_all(&bytes).map_err(|e| format!("{addr}: {e}"))?;
                }
                Out::Up { dialect, version } => {
                    if let Some(bye) = session.logoff() {
                        let _ = sock.write_all(&bye);
                    }
                    return Ok((version, dialect));
                }
                Out::LoginFailed(m) => return Err(m),
                Out::NotAmi(m) => {
                    return Err(format!("{addr} is not an Asterisk manager port: {m}"))
                }
                Out::Dead(m) => return Err(m),
                _ => {}
            }
        }
    }
    Err(format!("{addr}: no answer within {} s", timeout.as_secs()))
}

/// How a session ended.
enum End {
    Shutdown,
    Lost(String),
    LoginFailed(String),
    NotAmi(String),
}

struct Link<'a> {
    cfg: &'a LinkConfig,
    ch: &'a LinkChannels,
    /// Frames dropped at the bound since the last `Lost`; Some = dropping.
    losing: Option<u64>,
    lost_log: Throttle,
    dropped: u64,
}

/// The thread body; returns when `shutdown` fires (or its sender is gone).
pub fn run(cfg: LinkConfig, ch: LinkChannels) {
    let mut link = Link {
        cfg: &cfg,
        ch: &ch,
        losing: None,
        lost_log: Throttle::new(Duration::from_secs(10)),
        dropped: 0,
    };
    let mut backoff = Backoff::new(cfg.backoff_min, cfg.backoff_max);
    let mut number = 0u64;
    loop {
        let end = match connect(&cfg) {
            Ok((sock, addr)) => {
                number += 1;
                if number > 1 {
                    stats::add(&ch.counters.ami_reconnects, 1);
                }
                log::info!("connected to {addr} (AMI session {number})");
                let started = Instant::now();
                let end = link.session(sock, number);
                if started.elapsed() >= cfg.stable_after {
                    backoff.reset();
                }
                end
            }
            Err(e) => End::Lost(format!("cannot connect to Asterisk: {e}")),
        };
        let mut delay = backoff.next_delay();
        if matches!(end, End::NotAmi(_)) {
            // Something else listens there: no point in knocking twice a second.
            delay = cfg.backoff_max;
        }
        match end {
            End::Shutdown => break,
            End::Lost(why) => log::warn!("{why}; trying again in {:.1} s", delay.as_secs_f32()),
            End::NotAmi(why) => log::error!(
                "{}:{} is not an Asterisk manager port: {why} — check MANAGER_HOST/MANAGER_PORT \
                 (and manager.conf's port); trying again in {:.0} s",
                cfg.host,
                cfg.port,
                delay.as_secs_f32()
            ),
            End::LoginFailed(why) => log::error!(
                "{why}; check MANAGER_USER/MANAGER_PASS and manager.conf; trying again in {:.1} s",
                delay.as_secs_f32()
            ),
        }
        match ch.shutdown.recv_timeout(delay) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            _ => break,
        }
    }
    if link.dropped > 0 {
        log::warn!(
            "AMI link stopped; {} frames were dropped because the dispatcher fell behind \
             (each loss was followed by a resynchronisation)",
            link.dropped
        );
    } else {
        log::info!("AMI link stopped");
    }
}

impl Link<'_> {
    fn session(&mut self, mut sock: TcpStream, number: u64) -> End {
        let _ = sock.set_read_timeout(Some(POLL));
        let _ = sock.set_write_timeout(Some(Duration::from_secs(5)));
        let _ = sock.set_nodelay(true);
        let mut session = Session::new(self.cfg.session.clone(), number, Instant::now());
        let mut decoder = Decoder::new(self.cfg.limits);
        let mut buf = vec![0u8; 64 * 1024];
        let mut trace = String::new();
        let end = loop {
            if !matches!(
                self.ch.shutdown.try_recv(),
                Err(crossbeam_channel::TryRecvError::Empty)
            ) {
                if let Some(bytes) = session.logoff() {
                    let _ = sock.write_all(&bytes);
                }
                break End::Shutdown;
            }
            let mut outs = Vec::new();
            while let Ok(AmiCommand::Originate { ext, request }) = self.ch.commands.try_recv() {
                outs.extend(session.originate(&ext, &request));
            }
            match sock.read(&mut buf) {
                Ok(0) => break End::Lost("Asterisk closed the AMI connection".into()),
                Ok(n) => {
                    let bytes = &buf[..n];
                    if let Some(rec) = &self.ch.record {
                        let _ = rec.send(bytes.to_vec());
                    }
                    if log::log_enabled!(log::Level::Trace) {
                        // Whole lines only, so a secret split across two reads is still masked.
                        trace.push_str(&String::from_utf8_lossy(bytes));
                        let cut = match trace.rfind('\n') {
                            Some(i) => i + 1,
                            None if trace.len() > 64 * 1024 => trace.len(),
                            None => 0,
                        };
                        if cut > 0 {
                            let text = super::session::mask_trace(&trace[..cut]);
                            log::trace!("AMI <- {}", text.escape_debug());
                            trace.drain(..cut);
                        }
                    }
                    session.on_bytes(Instant::now());
                    decoder.push(bytes);
                    while let Some(item) = decoder.next_item() {
                        outs.extend(session.on_item(item));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => break End::Lost(format!("AMI read failed: {e}")),
            }
            outs.extend(session.tick(Instant::now()));
            if let Some(end) = self.carry_out(&mut sock, outs) {
                break end;
            }
            if let Some(lost) = self.resync_due() {
                self.send(AmiInput::Lost { frames: lost });
                outs = session.list_channels();
            } else {
                continue;
            }
            if let Some(end) = self.carry_out(&mut sock, outs) {
                break end;
            }
        };
        let _ = sock.shutdown(Shutdown::Both);
        if session.logged_in() {
            self.send(AmiInput::Down);
        }
        // Frames lost in a session that ended are made good by the next session's start.
        self.losing = None;
        end
    }

    fn send(&self, input: AmiInput) {
        let _ = self.ch.input.send(input);
    }

    /// While dropping: once the dispatcher has worked the queue down to half the bound, the number of
    /// frames lost (and dropping stops).
    fn resync_due(&mut self) -> Option<u64> {
        let lost = self.losing?;
        if self.ch.backlog.get() > self.ch.queue_bytes / 2 {
            return None;
        }
        self.losing = None;
        Some(lost)
    }

    /// Performs the session's outputs in order; `Some` ends the session. Frames are gathered and
    /// handed over as one batch (before any other output, so order is kept).
    fn carry_out(&mut self, sock: &mut TcpStream, outs: Vec<Out>) -> Option<End> {
        let mut batch = self.ch.backlog.recycled();
        // A write that fails (Asterisk already closed the connection) ends the session, but every
        // frame that arrived before the close is still handed over, in order.
        let mut end = None;
        for out in outs {
            if !matches!(out, Out::Frame(_)) && !batch.is_empty() {
                self.publish(std::mem::take(&mut batch));
            }
            match out {
                Out::Send(bytes) => {
                    if end.is_none() {
                        if let Err(e) = sock.write_all(&bytes) {
                            end = Some(End::Lost(format!("AMI write failed: {e}")));
                        }
                    }
                }
                Out::Up { dialect, version } => {
                    log::info!("logged in to Asterisk (AMI {version}, {dialect})");
                    self.send(AmiInput::Up { dialect, version });
                }
                Out::Frame(frame) => batch.push(frame),
                Out::Debug(m) => log::debug!("{m}"),
                Out::Info(m) => log::info!("{m}"),
                Out::Warn(m) => log::warn!("{m}"),
                Out::LoginFailed(m) => {
                    end.get_or_insert(End::LoginFailed(m));
                }
                Out::Dead(m) => {
                    end.get_or_insert(End::Lost(format!("AMI session abandoned: {m}")));
                }
                Out::NotAmi(m) => {
                    end.get_or_insert(End::NotAmi(m));
                }
            }
        }
        self.publish(batch);
        end
    }

    /// Hands a batch to the dispatcher, or drops it at the bound (see the module's paragraph).
    fn publish(&mut self, frames: Vec<Frame>) {
        if frames.is_empty() {
            return;
        }
        let cost: usize = frames.iter().map(Frame::cost).sum();
        let queued = self.ch.backlog.get();
        let over = queued > 0 && queued + cost > self.ch.queue_bytes;
        if self.losing.is_some() || over {
            let n = frames.len() as u64;
            self.dropped += n;
            stats::add(&self.ch.counters.ami_frames_lost, n);
            *self.losing.get_or_insert(0) += n;
            if let Some(more) = self.lost_log.hit(Instant::now()) {
                log::error!(
                    "the dispatcher is {queued} bytes behind (MANAGER_QUEUE_BYTES {}): AMI frames \
                     dropped ({} so far); the call state will be resynchronised{}",
                    self.ch.queue_bytes,
                    self.dropped,
                    Throttle::since(more)
                );
            }
            return;
        }
        self.ch.backlog.add(cost);
        self.send(AmiInput::Frames { frames, cost });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let got: Vec<u64> = (0..9).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(
            got,
            vec![500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }
}
