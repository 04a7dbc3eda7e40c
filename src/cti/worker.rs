//! The `client-N` threads: one per connection (the reader, this module's [`serve`]), on the one
//! socket (one descriptor per client).
//!
//! Shell around [`LineBuffer`] and [`Session`]. The reader frames lines, runs the session and queues
//! replies; the credentials are checked by the `db-N` login threads ([`Logins`]), never here, so this
//! thread only waits — until its login deadline at most, on a small stack (`CLIENT_STACK`).
//! Everything for the client (replies from the reader, notifications from the dispatcher) goes
//! through its [`OutQueue`], bounded in bytes, which sends at once without ever waiting (Unix; a
//! writer thread `client-N-w` elsewhere): see `cti::outq`. A client whose socket takes nothing for
//! `CTI_CLIENT_WRITE_TIMEOUT` is cut (counted, logged).
//!
//! Every way a connection ends — EOF, timeout, QUIT, a too-long line, a cut, an error or a panic —
//! goes through [`Leave`]'s `Drop`: the dispatcher forgets the registration, what is still queued is
//! sent (within the write timeout), the socket is shut down and the admission slot is freed.

use std::io::{ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::outq::{self, Chunk, Finisher, OutQueue, PushError, QueueConfig};
use super::proto::{self, LineBuffer, OrigRequest, MAX_LINE};
use super::session::{AgentRow, Env, Session};
use crate::admission::Slots;
use crate::oneshot::{oneshot, Reply};
use crate::registry::ClientId;
use crate::stats::{self, Counters};
use crate::store::Logins;
use crate::throttle::{Refusal, Throttle};

/// How long a reader waits for the dispatcher to answer a login question.
const DISPATCHER_TIMEOUT: Duration = Duration::from_secs(5);

/// What client threads tell the dispatcher.
#[derive(Debug)]
pub enum ClientEvent {
    Connected {
        id: ClientId,
        peer: SocketAddr,
        queue: OutQueue,
        sock: Arc<TcpStream>,
    },
    QueryUser {
        username: String,
        reply: Reply<bool>,
    },
    Register {
        id: ClientId,
        username: String,
        ext: String,
        reply: Reply<bool>,
    },
    Originate {
        id: ClientId,
        ext: String,
        request: OrigRequest,
    },
    Disconnected {
        id: ClientId,
    },
}

/// The `ctiserver` settings a connection runs with: taken when it is accepted, so that a SIGHUP
/// reload changes them for the connections that come after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub client_timeout: Duration,
    pub login_timeout: Duration,
    pub keepalive: u32,
    pub originate_contexts: Vec<String>,
    /// `CTI_ORIGINATE_PER_MINUTE`, `CTI_ORIGINATE_BURST`.
    pub originate_rate: crate::dialrate::DialLimits,
    pub queue_bytes: usize,
    pub write_timeout: Duration,
    /// `CTI_MAX_CLIENTS` in force (for log lines).
    pub max_clients: usize,
    /// `CTI_ALLOWED_NETWORKS`.
    pub allowed_networks: Vec<crate::netlist::Network>,
}

impl ClientSettings {
    pub fn from_config(c: &crate::config::CtiConfig) -> Self {
        ClientSettings {
            client_timeout: c.client_timeout,
            login_timeout: c.login_timeout,
            keepalive: c.keepalive,
            originate_contexts: c.originate_contexts.clone(),
            originate_rate: c.originate_rate,
            queue_bytes: c.client_queue_bytes,
            write_timeout: c.client_write_timeout,
            max_clients: c.max_clients,
            allowed_networks: c.allowed_networks.clone(),
        }
    }
}

/// Settings every thread reads and a reload replaces.
pub type SharedSettings = Arc<Mutex<Arc<ClientSettings>>>;

/// What every client thread needs; cloned per connection.
#[derive(Clone)]
pub struct WorkerContext {
    pub logins: Logins,
    pub events: Sender<ClientEvent>,
    pub slots: Arc<Slots>,
    pub counters: Arc<Counters>,
    pub settings: SharedSettings,
    pub throttle: Arc<Throttle>,
    /// ORIGs per agent, across the agent's connections.
    pub dial_rate: Arc<crate::dialrate::DialRate>,
}

impl WorkerContext {
    /// The settings in force now.
    pub fn settings(&self) -> Arc<ClientSettings> {
        self.settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

struct WorkerEnv<'a> {
    id: ClientId,
    ctx: &'a WorkerContext,
    peer: SocketAddr,
    login_deadline: Instant,
    notes: &'a mut NoteLimiter,
}

/// Repeated identical warnings from one connection: the first is logged, then at most one line
/// per [`NOTE_WINDOW`] saying how many more came (a client looping on a bad command cannot fill the
/// disk).
#[derive(Debug, Default)]
struct NoteLimiter {
    last: String,
    since: Option<Instant>,
    more: u64,
}

const NOTE_WINDOW: Duration = Duration::from_secs(10);

impl NoteLimiter {
    /// The lines to log for `message` now (none, one, or a summary and the new one).
    fn note(&mut self, message: &str, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        let within = self
            .since
            .is_some_and(|t| now.duration_since(t) < NOTE_WINDOW);
        if message == self.last && within {
            self.more += 1;
            return out;
        }
        if self.more > 0 {
            out.push(format!(
                "… {} more of \"{}\" in {} s",
                self.more,
                self.last,
                NOTE_WINDOW.as_secs()
            ));
        }
        self.more = 0;
        self.last = message.to_string();
        self.since = Some(now);
        out.push(message.to_string());
        out
    }

    /// The summary still owed when the connection ends.
    fn flush(&mut self) -> Option<String> {
        (self.more > 0).then(|| {
            let n = std::mem::take(&mut self.more);
            format!("… {n} more of \"{}\"", self.last)
        })
    }
}

impl WorkerEnv<'_> {
    fn ask(&self, make: impl FnOnce(Reply<bool>) -> ClientEvent) -> bool {
        let (tx, rx) = oneshot();
        if self.ctx.events.send(make(tx)).is_err() {
            return false;
        }
        rx.recv_deadline(Instant::now() + DISPATCHER_TIMEOUT)
            .unwrap_or(false)
    }
}

impl Env for WorkerEnv<'_> {
    fn user_logged_in(&mut self, username: &str) -> bool {
        let username = username.to_string();
        self.ask(|reply| ClientEvent::QueryUser { username, reply })
    }

    fn authenticate(&mut self, username: &str, secret: &str) -> Result<Option<AgentRow>, String> {
        self.ctx
            .logins
            .authenticate(username, secret, self.login_deadline)
    }

    fn register(&mut self, username: &str, ext: &str) -> bool {
        let (id, username, ext) = (self.id, username.to_string(), ext.to_string());
        let ok = self.ask(|reply| ClientEvent::Register {
            id,
            username,
            ext,
            reply,
        });
        if ok {
            self.ctx.slots.logged_in(self.id);
            stats::add(&self.ctx.counters.logins, 1);
        }
        ok
    }

    fn originate(&mut self, ext: &str, request: OrigRequest) {
        let _ = self.ctx.events.send(ClientEvent::Originate {
            id: self.id,
            ext: ext.to_string(),
            request,
        });
    }

    fn note(&mut self, message: &str) {
        if message.starts_with("login of") {
            stats::add(&self.ctx.counters.logins_failed, 1);
        }
        for line in self.notes.note(message, Instant::now()) {
            log::warn!("client-{}: {line}", self.id);
        }
    }

    fn debug(&mut self, message: &str) {
        log::debug!("client-{}: {message}", self.id);
    }

    fn orig_allowed(&mut self, username: &str) -> bool {
        let limits = self.ctx.settings().originate_rate;
        self.ctx.dial_rate.allow(username, limits, Instant::now())
    }

    fn throttled(&mut self, username: &str) -> Option<String> {
        let ip = self.peer.ip();
        match self
            .ctx
            .throttle
            .with(|t| t.check(ip, username, Instant::now()))
        {
            Ok(()) => None,
            Err(refusal) => {
                stats::add(&self.ctx.counters.logins_throttled, 1);
                // The same words every time, so that the per-connection summary folds them.
                Some(match refusal {
                    Refusal::Address { .. } => format!(
                        "too many failed logins from {ip}'s network: refused until the \
                         cool-down ends (CTI_LOGIN_MAX_FAILURES_PER_IP, CTI_LOGIN_COOLDOWN; \
                         networks by CTI_LOGIN_IPV4_PREFIX, CTI_LOGIN_IPV6_PREFIX)"
                    ),
                    Refusal::User { .. } => format!(
                        "too many failed logins for this user: refused from {ip}, a network it \
                         has not logged in from, until the cool-down ends \
                         (CTI_LOGIN_MAX_FAILURES, CTI_LOGIN_COOLDOWN)"
                    ),
                })
            }
        }
    }

    fn login_failed(&mut self, username: &str) {
        let ip = self.peer.ip();
        self.ctx
            .throttle
            .with(|t| t.failed(ip, username, Instant::now()));
    }

    fn login_succeeded(&mut self, username: &str) {
        let ip = self.peer.ip();
        self.ctx
            .throttle
            .with(|t| t.succeeded(ip, username, Instant::now()));
    }

    fn audit(&mut self, fields: &str) {
        // Identical lines in a row from one connection (a guessing loop) are summarised too.
        for line in self.notes.note(fields, Instant::now()) {
            audit(self.id, self.peer, &line);
        }
    }
}

/// One audit line, level Info: `audit: event=… key=value … client=client-N address=IP:PORT`.
fn audit(id: ClientId, peer: SocketAddr, fields: &str) {
    log::info!(target: "audit", "audit: {fields} client=client-{id} address={peer}");
}

fn set_keepalive(sock: &TcpStream, seconds: u32) {
    if seconds == 0 {
        return;
    }
    let params = socket2::TcpKeepalive::new().with_time(Duration::from_secs(u64::from(seconds)));
    if let Err(e) = socket2::SockRef::from(sock).set_tcp_keepalive(&params) {
        log::debug!("cannot enable TCP keep-alive: {e}");
    }
}

/// Why a session ended (logged); `login_deadline`: the read waited for the login deadline.
fn end_reason(e: &std::io::Error, login_deadline: bool) -> &'static str {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut if login_deadline => {
            "no login within the timeout"
        }
        ErrorKind::WouldBlock | ErrorKind::TimedOut => "client socket timeout",
        _ => "socket is broken",
    }
}

/// Gives everything back however the connection ends (return, error or panic).
struct Leave<'a> {
    id: ClientId,
    ctx: &'a WorkerContext,
    sock: Arc<TcpStream>,
    finisher: Option<Finisher>,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let _ = self
            .ctx
            .events
            .send(ClientEvent::Disconnected { id: self.id });
        if let Some(f) = self.finisher.take() {
            // What is still queued (a `900 BYE`, say) is sent first; a client that does not read
            // costs at most CTI_CLIENT_WRITE_TIMEOUT here, and a shut-down socket nothing.
            f.finish();
        }
        let _ = self.sock.shutdown(Shutdown::Both);
        self.ctx.slots.release(self.id);
    }
}

/// Serves one connection until it ends; runs on the `client-N` thread. The connection was admitted
/// (its slot taken) by the listener; this function gives it back.
pub fn serve(id: ClientId, sock: Arc<TcpStream>, peer: SocketAddr, ctx: WorkerContext) {
    let started = Instant::now();
    let mut leave = Leave {
        id,
        ctx: &ctx,
        sock: sock.clone(),
        finisher: None,
    };
    let settings = ctx.settings();
    let _ = sock.set_write_timeout(Some(settings.write_timeout));
    let _ = sock.set_nodelay(true);
    set_keepalive(&sock, settings.keepalive);
    let started_queue = outq::start(
        sock.clone(),
        QueueConfig {
            id,
            limit: settings.queue_bytes,
            write_timeout: settings.write_timeout,
            counters: ctx.counters.clone(),
        },
    );
    let queue = match started_queue {
        Ok((queue, finisher)) => {
            leave.finisher = Some(finisher);
            queue
        }
        Err(e) => {
            log::warn!("client-{id}: {e}: closing");
            return;
        }
    };
    if queue.push(Chunk::Static(proto::WELCOME)).is_err() {
        return;
    }
    let connected = ClientEvent::Connected {
        id,
        peer,
        queue: queue.clone(),
        sock: sock.clone(),
    };
    if ctx.events.send(connected).is_ok() {
        log::info!("client-{id} connected from {peer}");
        let mut session = Session::with_originate_contexts(settings.originate_contexts.clone());
        let mut notes = NoteLimiter::default();
        let why = read_loop(
            id,
            &sock,
            peer,
            &queue,
            &ctx,
            &settings,
            started,
            &mut session,
            &mut notes,
        );
        if let Some(summary) = notes.flush() {
            log::warn!("client-{id}: {summary}");
        }
        if let Some((username, ext)) = session.agent() {
            audit(
                id,
                peer,
                &format!(
                    "event=logout user={} ext={} reason={why}",
                    crate::logging::quote(username),
                    crate::logging::quote(ext)
                ),
            );
        }
    }
    drop(queue);
    drop(leave);
}

/// Serves the lines of one connection until it ends; returns why it ended (for the audit line).
#[allow(clippy::too_many_arguments)]
fn read_loop(
    id: ClientId,
    sock: &TcpStream,
    peer: SocketAddr,
    queue: &OutQueue,
    ctx: &WorkerContext,
    settings: &ClientSettings,
    started: Instant,
    session: &mut Session,
    notes: &mut NoteLimiter,
) -> &'static str {
    let login_deadline = started + settings.login_timeout;
    let mut lines = LineBuffer::new(MAX_LINE);
    // Commands are short lines; a small buffer keeps the thread's stack to few pages.
    let mut buf = [0u8; 512];
    let mut reader = sock;
    loop {
        // Before login the login deadline may come first; after it only silence counts.
        let (timeout, login_wait) = if session.is_authenticated() {
            (settings.client_timeout, false)
        } else {
            let left = login_deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::info!("client-{id}: no login within the timeout: closing");
                return "login_timeout";
            }
            (
                left.min(settings.client_timeout),
                left <= settings.client_timeout,
            )
        };
        let _ = sock.set_read_timeout(Some(timeout));
        let n = match reader.read(&mut buf) {
            Ok(0) => {
                log::info!("client-{id}: remote client has closed the socket");
                return "closed_by_client";
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                let why = end_reason(&e, login_wait);
                log::info!("client-{id}: {why}: closing");
                return match e.kind() {
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => "timeout",
                    _ => "socket_error",
                };
            }
        };
        lines.push(&buf[..n]);
        loop {
            let line = match lines.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    log::warn!("client-{id}: line longer than {} bytes: closing", e.limit);
                    return "line_too_long";
                }
            };
            log::trace!("client-{id} <- {}", trace_line(&line));
            let mut env = WorkerEnv {
                id,
                ctx,
                peer,
                login_deadline,
                notes,
            };
            let step = session.handle(&line, &mut env);
            let reply = match (step.reply, step.ext_reply, session.agent()) {
                (Some(reply), _, _) => Some(Chunk::Static(reply)),
                (None, true, Some((_, ext))) => Some(Chunk::Owned(proto::ext_line(ext))),
                _ => None,
            };
            if let Some(reply) = reply {
                match queue.push(reply) {
                    Ok(()) => {}
                    // The connection is already gone (the client closed or reset it): nothing
                    // to warn about.
                    Err(PushError::Closed) => {
                        log::info!("client-{id}: the connection closed before the reply: closing");
                        return "closed_by_client";
                    }
                    Err(e) => {
                        log::warn!("client-{id}: not reading its replies ({e:?}): closing");
                        return "not_reading";
                    }
                }
            }
            if step.close {
                return "quit";
            }
        }
    }
}

/// One received command line for the socket trace: a `PASS` secret hidden (whatever the case or the
/// leading blanks), control characters made visible, the length capped.
pub fn trace_line(line: &str) -> String {
    let word = line.trim_start().as_bytes();
    if word.len() >= 4 && word[..4].eq_ignore_ascii_case(b"PASS") {
        return "PASS ********".into();
    }
    crate::logging::escape(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_hides_pass_in_any_framing() {
        assert_eq!(trace_line("pass 098f"), "PASS ********");
        assert_eq!(trace_line("\tPASS 098f"), "PASS ********");
        assert_eq!(trace_line("  PaSs"), "PASS ********");
        assert_eq!(trace_line("USER a"), "USER a");
    }

    #[test]
    fn trace_never_panics_and_escapes() {
        // Multi-byte characters among the first four bytes once sliced a char and panicked.
        for line in ["é", "éé", "aéb", "€x", "\u{0}\r", "PA\u{e9}S"] {
            let _ = trace_line(line);
        }
        assert_eq!(trace_line("a\rb\u{0}"), "a\\rb\\0");
        assert_eq!(
            trace_line(&"x".repeat(500)).chars().count(),
            crate::logging::LOG_CAP + 1
        );
    }
}
