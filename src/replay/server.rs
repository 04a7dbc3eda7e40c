//! The replayer's sockets and threads: an accept loop on a loopback address and, per connection, a
//! reader thread (actions in) and a writer thread (banner, answers and the replayed frames out, whole
//! frames only, never interleaved). Everything written is kept per session so tests can compare it
//! with what the server recorded.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};

use super::{answer, rewrite_ids, spread_agents, Capture, Credentials};
use crate::ami::frame::{Decoder, Frame, Item};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// The capture's own timing (its `.recv-timing.tsv`); 20 frames/s where it has none.
    Recorded,
    /// Frames per second.
    Rate(f64),
    /// As fast as the socket takes them.
    Fast,
}

#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub listen: SocketAddr,
    /// Banner version, e.g. `9.0.0` (the line sent is `Asterisk Call Manager/<banner>`).
    pub banner: String,
    pub captures: Vec<Capture>,
    pub user: String,
    pub secret: String,
    pub pace: Pace,
    /// Plays of the whole capture list per session; 0 = forever.
    pub times: u64,
    pub rewrite_ids: bool,
    /// First session only: close the connection after this many replayed bytes.
    pub drop_after: Option<usize>,
    pub answer_ping: bool,
    /// Print every action received to stderr.
    pub verbose: bool,
    /// List items for `CoreShowChannels` and `Status` (see `channel_list`).
    pub channels: Vec<Frame>,
    /// Do not replay until [`ReplayServer::release`] (tests: until the agents are logged in), or
    /// play step by step with [`ReplayServer::play_through`].
    pub held: bool,
    /// Keep a copy of every byte written in [`Stats::sent`] (tests); off for endless plays, whose
    /// copy would grow without bound.
    pub keep_sent: bool,
    /// `(device, n)`: the calls of `device` go to `n` distinct agents per play (see
    /// [`spread_agents`]).
    pub spread: Option<(String, u64)>,
    /// One plan per AMI session, in order (session N plays `sessions[N-1]`; later sessions the last
    /// one). Every session but the last closes the connection when its play ends, as an AMI drop or
    /// an Asterisk restart would. Empty: every session plays `captures` with `channels`.
    pub sessions: Vec<SessionPlan>,
    /// Play nothing before the `Status` list has been answered (the last list the server asks for),
    /// as in a recording whose lists came before its events. Off: events race the lists' answers,
    /// as they may with a real Asterisk.
    pub lists_first: bool,
}

/// What one AMI session plays, and the channel list it answers with.
#[derive(Debug, Clone, Default)]
pub struct SessionPlan {
    pub captures: Vec<Capture>,
    pub channels: Vec<Frame>,
    /// See [`ReplayConfig::lists_first`].
    pub lists_first: bool,
}

impl ReplayConfig {
    pub fn new(listen: SocketAddr, captures: Vec<Capture>) -> Self {
        let banner = captures
            .iter()
            .find_map(|c| c.banner.clone())
            .unwrap_or_else(|| "1.0".into());
        ReplayConfig {
            listen,
            banner,
            captures,
            user: "ctimanager".into(),
            secret: "ctimanager".into(),
            pace: Pace::Fast,
            times: 1,
            rewrite_ids: false,
            drop_after: None,
            answer_ping: true,
            verbose: false,
            channels: Vec::new(),
            held: false,
            keep_sent: false,
            spread: None,
            sessions: Vec::new(),
            lists_first: false,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub sessions: u64,
    pub logins_ok: u64,
    pub logins_failed: u64,
    /// (session, action) in arrival order.
    pub actions: Vec<(u64, Frame)>,
    /// Every byte written, per session (index 0 = session 1), when `keep_sent` is on.
    pub sent: Vec<Vec<u8>>,
    /// Sessions whose replay ran to its end.
    pub replays_done: u64,
    /// Replayed frames written, all sessions together.
    pub frames_sent: u64,
}

impl Stats {
    /// The actions received whose `Action` is `name` (case-insensitive), in order.
    pub fn actions_named(&self, name: &str) -> Vec<&Frame> {
        self.actions
            .iter()
            .filter(|(_, a)| {
                a.get("Action")
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .map(|(_, a)| a)
            .collect()
    }
}

/// How many replayed frames each session may write before it waits: 0 while held, `u64::MAX` once
/// released, a number in between while a test steps through a capture.
type Allowed = Arc<AtomicU64>;

pub struct ReplayServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    allowed: Allowed,
    stats: Arc<Mutex<Stats>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    cfg: ReplayConfig,
    stop: Arc<AtomicBool>,
    allowed: Allowed,
    stats: Arc<Mutex<Stats>>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl ReplayServer {
    pub fn start(cfg: ReplayConfig) -> std::io::Result<ReplayServer> {
        let listener = TcpListener::bind(cfg.listen)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let allowed = Arc::new(AtomicU64::new(if cfg.held { 0 } else { u64::MAX }));
        let stats = Arc::new(Mutex::new(Stats::default()));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::new(Shared {
            cfg,
            stop: stop.clone(),
            allowed: allowed.clone(),
            stats: stats.clone(),
            conns: conns.clone(),
        });
        let accept = thread::Builder::new()
            .name("replay-accept".into())
            .spawn(move || accept_loop(listener, shared))?;
        Ok(ReplayServer {
            addr,
            stop,
            allowed,
            stats,
            conns,
            accept: Some(accept),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts the replay of a `held` server (on sessions already logged in, and later ones), or
    /// lets a stepped one play to its end.
    pub fn release(&self) {
        self.allowed.store(u64::MAX, Ordering::SeqCst);
    }

    /// Steps a `held` server: lets each session write its replayed frames up to frame `frames`
    /// (counted from the start of its play: `frames` = the index of the first frame still held
    /// back), then waits until that many frames have been written (all sessions together: meant
    /// for one session); false on timeout. A test then checks what that part of the call did, with
    /// no clock racing it, and steps on.
    pub fn play_through(&self, frames: u64, timeout: Duration) -> bool {
        self.allowed.fetch_max(frames, Ordering::SeqCst);
        self.wait_for(timeout, |s| s.frames_sent >= frames)
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until `pred(stats)` holds; false on timeout.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Stats) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if pred(&self.stats()) {
                return true;
            }
            thread::sleep(Duration::from_millis(10));
        }
        pred(&self.stats())
    }

    /// Closes every connection now (as an Asterisk restart would), keeps listening.
    pub fn drop_connections(&self) {
        if let Ok(mut conns) = self.conns.lock() {
            for c in conns.drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        self.drop_connections();
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut handles = Vec::new();
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(sock) = conn else { continue };
        let session = {
            let Ok(mut s) = shared.stats.lock() else {
                break;
            };
            s.sessions += 1;
            s.sent.push(Vec::new());
            s.sessions
        };
        if let (Ok(mut conns), Ok(clone)) = (shared.conns.lock(), sock.try_clone()) {
            conns.push(clone);
        }
        let shared = shared.clone();
        if let Ok(h) = thread::Builder::new()
            .name(format!("replay-{session}"))
            .spawn(move || serve(sock, session, &shared))
        {
            handles.push(h);
        }
    }
    for h in handles {
        let _ = h.join();
    }
}

enum Incoming {
    Action(Frame),
    Closed,
}

fn reader(mut sock: TcpStream, tx: crossbeam_channel::Sender<Incoming>) {
    let mut dec = Decoder::default();
    let mut buf = [0u8; 8192];
    loop {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                dec.push(&buf[..n]);
                while let Some(item) = dec.next_item() {
                    if let Item::Frame(f) = item {
                        if tx.send(Incoming::Action(f)).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
    let _ = tx.send(Incoming::Closed);
}

/// The replay schedule: (round, capture, frame) in order.
struct Schedule {
    round: u64,
    capture: usize,
    frame: usize,
    /// Time offset of the current round/capture start, and the last frame's due time.
    base: Duration,
    last: Duration,
}

struct Conn<'a> {
    sock: TcpStream,
    session: u64,
    shared: &'a Shared,
    /// This session's configuration (its plan applied).
    cfg: Arc<ReplayConfig>,
    /// Close the connection when the play ends (every planned session but the last).
    close_at_end: bool,
    replayed: usize,
    /// A `Status` action has been answered in this session.
    status_answered: bool,
    /// Uniqueids of the `Hangup`s this session has played.
    hung_up: std::collections::HashSet<String>,
}

/// The configuration session `session` (1, 2, …) runs with.
fn session_cfg(cfg: &ReplayConfig, session: u64) -> (ReplayConfig, bool) {
    let n = cfg.sessions.len();
    if n == 0 {
        return (cfg.clone(), false);
    }
    let i = (session as usize).min(n) - 1;
    let plan = &cfg.sessions[i];
    let mut c = cfg.clone();
    c.captures = plan.captures.clone();
    c.channels = plan.channels.clone();
    c.lists_first = plan.lists_first;
    c.sessions = Vec::new();
    (c, (session as usize) < n)
}

impl Conn<'_> {
    fn write(&mut self, bytes: &[u8]) -> bool {
        if self.shared.cfg.keep_sent {
            if let Ok(mut s) = self.shared.stats.lock() {
                if let Some(sent) = s.sent.get_mut(self.session as usize - 1) {
                    sent.extend_from_slice(bytes);
                }
            }
        }
        self.sock.write_all(bytes).is_ok()
    }
}

fn serve(sock: TcpStream, session: u64, shared: &Shared) {
    let (session_cfg, close_at_end) = session_cfg(&shared.cfg, session);
    let (tx, rx) = unbounded();
    if let Ok(read_half) = sock.try_clone() {
        let _ = thread::Builder::new()
            .name(format!("replay-{session}-r"))
            .spawn(move || reader(read_half, tx));
    }
    let mut conn = Conn {
        sock,
        session,
        shared,
        cfg: Arc::new(session_cfg),
        close_at_end,
        replayed: 0,
        status_answered: false,
        hung_up: std::collections::HashSet::new(),
    };
    let banner = format!("Asterisk Call Manager/{}\r\n", conn.cfg.banner);
    if !conn.write(banner.as_bytes()) {
        return;
    }
    let mut started: Option<Instant> = None;
    let mut playing = false;
    let mut written: u64 = 0;
    let mut sched = Schedule {
        round: 0,
        capture: 0,
        frame: 0,
        base: Duration::ZERO,
        last: Duration::ZERO,
    };
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let allowed = shared.allowed.load(Ordering::SeqCst);
        let lists_done = !conn.cfg.lists_first || conn.status_answered;
        if !playing && started.is_some() && allowed > 0 && lists_done {
            // The replay's clock starts when both the login and the release have happened.
            playing = true;
            started = Some(Instant::now());
        }
        let due = if playing && written < allowed {
            started.and_then(|t0| next_due(&conn.cfg, &sched).map(|d| t0 + d))
        } else {
            None
        };
        let wait = match due {
            Some(d) => d.saturating_duration_since(Instant::now()),
            // Logged in and held back (held, or stepped to its limit): look again soon, a test
            // is about to allow the next step.
            None if started.is_some() && written >= allowed => Duration::from_millis(5),
            None => Duration::from_millis(100),
        };
        let go_on = match recv(&rx, wait) {
            Some(Incoming::Closed) => false,
            Some(Incoming::Action(action)) => handle_action(&mut conn, &action, &mut started),
            None if due.is_some() => {
                written += 1;
                send_next(&mut conn, &mut sched)
            }
            None => true,
        };
        if !go_on {
            break;
        }
    }
    close_gently(&conn.sock, &rx);
}

/// The Uniqueid of a `Hangup` frame (keys matched without regard to case), else None.
fn hangup_uid(frame: &[u8]) -> Option<String> {
    let mut is_hangup = false;
    let mut uid = None;
    for line in frame.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, value) = line.split_at(colon);
        let value = String::from_utf8_lossy(&value[1..]).trim().to_string();
        if key.eq_ignore_ascii_case(b"Event") {
            is_hangup = value.eq_ignore_ascii_case("Hangup");
        } else if key.eq_ignore_ascii_case(b"Uniqueid") {
            uid = Some(value);
        }
    }
    uid.filter(|_| is_hangup)
}

/// Ends a connection the way Asterisk's own close looks to the peer: a FIN, not a reset. A socket
/// closed with bytes it has not read (an action the peer sent just before) makes the kernel send a
/// reset, and a reset makes the peer's kernel throw away what it had received but not yet read —
/// the last frames before a planned drop. So: stop writing, let the reader thread take what still
/// comes until the peer closes too (at most a second), then close.
fn close_gently(sock: &TcpStream, rx: &Receiver<Incoming>) {
    let _ = sock.shutdown(Shutdown::Write);
    let until = Instant::now() + Duration::from_secs(1);
    while let Ok(Incoming::Action(_)) = rx.recv_deadline(until) {}
    let _ = sock.shutdown(Shutdown::Both);
}

fn recv(rx: &Receiver<Incoming>, wait: Duration) -> Option<Incoming> {
    match rx.recv_timeout(wait) {
        Ok(m) => Some(m),
        Err(RecvTimeoutError::Timeout) => None,
        Err(RecvTimeoutError::Disconnected) => Some(Incoming::Closed),
    }
}

/// Answers one action; false closes the connection.
fn handle_action(conn: &mut Conn<'_>, action: &Frame, started: &mut Option<Instant>) -> bool {
    let cfg = conn.cfg.clone();
    let name = action.get("Action").unwrap_or("?").to_string();
    if cfg.verbose {
        let shown =
            action.map_values(|k, _| k.eq_ignore_ascii_case("Secret").then(|| "********".into()));
        eprintln!(
            "ami-replay: session {}: {}",
            conn.session,
            shown.to_text().trim_end().replace("\r\n", " | ")
        );
    }
    if let Ok(mut s) = conn.shared.stats.lock() {
        s.actions.push((conn.session, action.clone()));
    }
    // The channel lists as Asterisk would answer them now: without the channels this session has
    // already played the Hangup of (a list answered from the plan as it was would bring them back).
    let live: Vec<Frame> = cfg
        .channels
        .iter()
        .filter(|f| f.get("Uniqueid").is_none_or(|u| !conn.hung_up.contains(u)))
        .cloned()
        .collect();
    let creds = Credentials {
        user: &cfg.user,
        secret: &cfg.secret,
        answer_ping: cfg.answer_ping,
        fully_booted: cfg.banner != "1.0",
        channels: &live,
    };
    if started.is_none() && !name.eq_ignore_ascii_case("login") {
        let id = action.action_id().unwrap_or("");
        let denied =
            format!("Response: Error\r\nActionID: {id}\r\nMessage: Permission denied\r\n\r\n");
        return conn.write(denied.as_bytes());
    }
    let reply = answer(action, &creds);
    if name.eq_ignore_ascii_case("status") {
        conn.status_answered = true;
    }
    if name.eq_ignore_ascii_case("login") {
        if let Ok(mut s) = conn.shared.stats.lock() {
            if reply.login_ok {
                s.logins_ok += 1;
            } else {
                s.logins_failed += 1;
            }
        }
        if reply.login_ok {
            *started = Some(Instant::now());
        }
    }
    conn.write(&reply.bytes) && !reply.close
}

/// When the next frame is due, relative to the login; `None` when the replay is over.
fn next_due(cfg: &ReplayConfig, s: &Schedule) -> Option<Duration> {
    if cfg.times != 0 && s.round >= cfg.times {
        return None;
    }
    let cap = cfg.captures.get(s.capture)?;
    let frame = cap.frames.get(s.frame)?;
    Some(match cfg.pace {
        Pace::Fast => s.last,
        Pace::Rate(r) => s.last + Duration::from_secs_f64(1.0 / r.max(0.001)),
        Pace::Recorded => match (frame.at, cap.frames.first().and_then(|f| f.at)) {
            (Some(at), Some(first)) => s.base + at.saturating_sub(first),
            _ => s.last + Duration::from_millis(50),
        },
    })
}

/// Writes the due frame and advances; false closes the connection.
fn send_next(conn: &mut Conn<'_>, s: &mut Schedule) -> bool {
    let cfg = conn.cfg.clone();
    let Some(due) = next_due(&cfg, s) else {
        return true;
    };
    let Some(frame) = cfg
        .captures
        .get(s.capture)
        .and_then(|c| c.frames.get(s.frame))
    else {
        return true;
    };
    let mut bytes = if cfg.rewrite_ids {
        rewrite_ids(&frame.bytes, s.round)
    } else {
        frame.bytes.clone()
    };
    if let Some((device, n)) = &cfg.spread {
        bytes = spread_agents(&bytes, device, s.round, *n);
    }
    if let (Some(limit), 1) = (cfg.drop_after, conn.session) {
        if conn.replayed + bytes.len() > limit {
            let part = limit - conn.replayed;
            conn.write(&bytes[..part]);
            return false;
        }
    }
    conn.replayed += bytes.len();
    if !conn.write(&bytes) {
        return false;
    }
    if let Some(uid) = hangup_uid(&bytes) {
        conn.hung_up.insert(uid);
    }
    if let Ok(mut st) = conn.shared.stats.lock() {
        st.frames_sent += 1;
    }
    s.last = due;
    s.frame += 1;
    if s.frame >= cfg.captures[s.capture].frames.len() {
        s.frame = 0;
        s.capture += 1;
        // A pause between plays, except at full speed (which measures the server, not the pause).
        s.base = match cfg.pace {
            Pace::Fast => due,
            _ => due + Duration::from_millis(100),
        };
        s.last = s.base;
        if s.capture >= cfg.captures.len() {
            s.capture = 0;
            s.round += 1;
            if cfg.times != 0 && s.round >= cfg.times {
                if let Ok(mut st) = conn.shared.stats.lock() {
                    st.replays_done += 1;
                }
                // A planned session that is not the last ends here: the AMI drop or the restart.
                if conn.close_at_end {
                    return false;
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod hangup_tests {
    use super::hangup_uid;

    #[test]
    fn a_hangup_names_its_uniqueid_and_nothing_else_does() {
        let f = b"Event: Hangup\r\nChannel: PJSIP/201-1\r\nUniqueid: 1796.7\r\nCause: 16\r\n\r\n";
        assert_eq!(hangup_uid(f).as_deref(), Some("1796.7"));
        assert_eq!(
            hangup_uid(b"event: hangup\r\nUNIQUEID:  9.1 \r\n\r\n").as_deref(),
            Some("9.1")
        );
        assert_eq!(
            hangup_uid(b"Event: Newstate\r\nUniqueid: 1.2\r\n\r\n"),
            None
        );
        assert_eq!(
            hangup_uid(b"Event: HangupRequest\r\nUniqueid: 1.2\r\n\r\n"),
            None
        );
        assert_eq!(hangup_uid(b"\xff\xfe"), None);
    }
}
