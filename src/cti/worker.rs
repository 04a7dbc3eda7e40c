//! The `client-N` threads: one reader (this module's [`serve`]) and one writer per connection.
//!
//! Shell around [`LineBuffer`] and [`Session`]. The reader frames lines, runs the session (the database
//! lookup happens here, on the client's own thread) and queues replies; the writer owns the socket's
//! write side and sends, in order, everything queued for it — replies from the reader and notifications
//! from the dispatcher. The queue is bounded: the reader waits for room (it only delays itself); the
//! dispatcher never waits (see `dispatcher`). Timeouts: `CTI_CLIENT_TIMEOUT` of silence, and
//! `CTI_LOGIN_TIMEOUT` from accept to a completed login. EOF, timeout, QUIT or a too-long line end the
//! session; the dispatcher forgets its registration.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};

use super::proto::{self, LineBuffer, OrigRequest, MAX_LINE};
use super::session::{AgentRow, Env, Session};
use crate::dispatcher::{ClientEvent, Outbound};
use crate::registry::ClientId;
use crate::store::Store;

/// Notifications and replies waiting for one client's writer.
pub const CLIENT_QUEUE: usize = 256;
/// A client that does not take our bytes for this long is dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a reader waits for the dispatcher to answer a login question.
const DISPATCHER_TIMEOUT: Duration = Duration::from_secs(5);

/// What every client thread needs; cloned per connection.
#[derive(Clone)]
pub struct WorkerContext {
    pub store: Arc<dyn Store>,
    pub events: Sender<ClientEvent>,
    pub client_timeout: Duration,
    pub login_timeout: Duration,
    pub keepalive: u32,
    pub originate_contexts: Vec<String>,
}

struct WorkerEnv<'a> {
    id: ClientId,
    ctx: &'a WorkerContext,
}

impl WorkerEnv<'_> {
    fn ask(&self, make: impl FnOnce(Sender<bool>) -> ClientEvent) -> bool {
        let (tx, rx) = bounded(1);
        if self.ctx.events.send(make(tx)).is_err() {
            return false;
        }
        rx.recv_timeout(DISPATCHER_TIMEOUT).unwrap_or(false)
    }
}

impl Env for WorkerEnv<'_> {
    fn user_logged_in(&mut self, username: &str) -> bool {
        let username = username.to_string();
        self.ask(|reply| ClientEvent::QueryUser { username, reply })
    }

    fn authenticate(&mut self, username: &str, secret: &str) -> Result<Option<AgentRow>, String> {
        self.ctx.store.authenticate(username, secret)
    }

    fn register(&mut self, username: &str, ext: &str) -> bool {
        let (id, username, ext) = (self.id, username.to_string(), ext.to_string());
        self.ask(|reply| ClientEvent::Register {
            id,
            username,
            ext,
            reply,
        })
    }

    fn originate(&mut self, ext: &str, request: OrigRequest) {
        let _ = self.ctx.events.send(ClientEvent::Originate {
            id: self.id,
            ext: ext.to_string(),
            request,
        });
    }

    fn note(&mut self, message: &str) {
        log::warn!("client-{}: {message}", self.id);
    }

    fn debug(&mut self, message: &str) {
        log::debug!("client-{}: {message}", self.id);
    }
}

fn writer(mut sock: TcpStream, rx: Receiver<Outbound>, id: ClientId) {
    for out in rx.iter() {
        if let Err(e) = sock.write_all(out.bytes()) {
            log::info!("client-{id}: write failed ({e}): closing");
            let _ = sock.shutdown(Shutdown::Both);
            // Drain so that senders never block on a dead client.
            for _ in rx.iter() {}
            return;
        }
    }
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

/// Serves one connection until it ends; runs on the `client-N` thread.
pub fn serve(id: ClientId, sock: TcpStream, peer: SocketAddr, ctx: WorkerContext) {
    let started = Instant::now();
    let (tx, rx) = bounded::<Outbound>(CLIENT_QUEUE);
    let (Ok(write_half), Ok(registry_half)) = (sock.try_clone(), sock.try_clone()) else {
        log::warn!("client-{id}: cannot clone the socket: closing");
        return;
    };
    let _ = write_half.set_write_timeout(Some(WRITE_TIMEOUT));
    let _ = sock.set_nodelay(true);
    set_keepalive(&sock, ctx.keepalive);
    let writer = thread::Builder::new()
        .name(format!("client-{id}-w"))
        .stack_size(64 * 1024)
        .spawn(move || writer(write_half, rx, id));
    let Ok(writer) = writer else {
        log::warn!("client-{id}: cannot start its writer thread: closing");
        return;
    };
    let _ = tx.send(Outbound::Reply(proto::WELCOME));
    let connected = ClientEvent::Connected {
        id,
        peer,
        tx: tx.clone(),
        sock: registry_half,
    };
    if ctx.events.send(connected).is_ok() {
        log::info!("client-{id} connected from {peer}");
        read_loop(id, &sock, &tx, &ctx, started);
    }
    let _ = ctx.events.send(ClientEvent::Disconnected { id });
    drop(tx);
    let _ = writer.join();
    let _ = sock.shutdown(Shutdown::Both);
}

fn read_loop(
    id: ClientId,
    mut sock: &TcpStream,
    tx: &Sender<Outbound>,
    ctx: &WorkerContext,
    started: Instant,
) {
    let mut session = Session::with_originate_contexts(ctx.originate_contexts.clone());
    let mut lines = LineBuffer::new(MAX_LINE);
    let mut buf = [0u8; 4096];
    loop {
        // Before login the login deadline may come first; after it only silence counts.
        let (timeout, login_deadline) = if session.is_authenticated() {
            (ctx.client_timeout, false)
        } else {
            let left = ctx.login_timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                log::info!("client-{id}: no login within the timeout: closing");
                return;
            }
            (left.min(ctx.client_timeout), left <= ctx.client_timeout)
        };
        let _ = sock.set_read_timeout(Some(timeout));
        let n = match sock.read(&mut buf) {
            Ok(0) => {
                log::info!("client-{id}: remote client has closed the socket");
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                log::info!("client-{id}: {}: closing", end_reason(&e, login_deadline));
                return;
            }
        };
        log::trace!("client-{id} <- {}", redact(&buf[..n]));
        lines.push(&buf[..n]);
        loop {
            let line = match lines.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(e) => {
                    log::warn!("client-{id}: line longer than {} bytes: closing", e.limit);
                    return;
                }
            };
            let step = session.handle(&line, &mut WorkerEnv { id, ctx });
            if let Some(reply) = step.reply {
                if tx.send(Outbound::Reply(reply)).is_err() {
                    return;
                }
            }
            if step.close {
                return;
            }
        }
    }
}

/// Raw client bytes for the socket trace, with PASS secrets hidden.
fn redact(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split('\n')
        .map(|l| {
            if l.len() >= 4 && l[..4].eq_ignore_ascii_case("PASS") {
                "PASS ********"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_pass() {
        assert_eq!(
            super::redact(b"USER a\npass 098f\nNOOP\n"),
            "USER a\\nPASS ********\\nNOOP\\n"
        );
    }
}
