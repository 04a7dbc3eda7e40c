//! The `listener` thread: blocking accept loop, admission (see `admission`), one `client-N` thread
//! per connection.
//!
//! Shell. Each accepted socket is admitted or refused by [`Slots`]: admitting may close older pending
//! connections (counted; logged at most once per [`Throttle`] window with the number since), a
//! refusal closes the new one at once, without the welcome line. Stopping: the server sets the stop
//! flag and connects to the listening address to wake `accept`; the loop then closes the connections
//! that have not logged in and joins every client thread it started (the dispatcher closes the
//! agents' sockets).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::cti::worker::{self, WorkerContext};
use crate::logging::Throttle;
use crate::registry::ClientId;
use crate::stats::{self, CutReason};

/// Stack of a client reader thread: line framing, the session and logging; the database work runs
/// on the `db-N` threads.
pub const CLIENT_STACK: usize = 128 * 1024;

pub fn run(listener: TcpListener, ctx: WorkerContext, stop: Arc<AtomicBool>) {
    let mut clients: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id: ClientId = 0;
    let mut refusals = Throttle::new(Duration::from_secs(10));
    let mut evictions = Throttle::new(Duration::from_secs(10));
    let mut accept_errors = Throttle::new(Duration::from_secs(10));
    let mut strangers = Throttle::new(Duration::from_secs(10));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let sock = match conn {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: do not spin.
                if let Some(more) = accept_errors.hit(Instant::now()) {
                    log::warn!("accept failed: {e}{}", Throttle::since(more));
                }
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let peer = sock
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        if clients.len() > 64 {
            clients.retain(|h| !h.is_finished());
        }
        // CTI_ALLOWED_NETWORKS: closed before the welcome line.
        if !crate::netlist::allowed(&ctx.settings().allowed_networks, peer.ip()) {
            stats::add(&ctx.counters.not_allowed, 1);
            if let Some(more) = strangers.hit(Instant::now()) {
                log::warn!(
                    "connection from {peer} closed: not in CTI_ALLOWED_NETWORKS{}",
                    Throttle::since(more)
                );
            }
            continue;
        }
        next_id += 1;
        let id = next_id;
        let sock = Arc::new(sock);
        stats::add(&ctx.counters.connections, 1);
        match ctx.slots.admit(id, peer.ip(), sock.clone()) {
            None => {
                ctx.counters.cut(CutReason::Refused);
                if let Some(more) = refusals.hit(Instant::now()) {
                    log::warn!(
                        "client limit ({}) reached: connection from {peer} closed{}",
                        ctx.settings().max_clients,
                        Throttle::since(more)
                    );
                }
                continue;
            }
            Some(0) => {}
            Some(n) => {
                stats::add(&ctx.counters.pending_evicted, n as u64);
                if let Some(more) = evictions.hit(Instant::now()) {
                    log::warn!(
                        "too many connections that have not logged in (CTI_MAX_PENDING, \
                         CTI_MAX_PENDING_PER_IP): the oldest closed to admit {peer}{}",
                        Throttle::since(more)
                    );
                }
            }
        }
        let ctx2 = ctx.clone();
        match thread::Builder::new()
            .name(format!("client-{id}"))
            .stack_size(CLIENT_STACK)
            .spawn(move || worker::serve(id, sock, peer, ctx2))
        {
            Ok(h) => clients.push(h),
            Err(e) => {
                ctx.slots.release(id);
                log::error!("cannot start a thread for {peer}: {e}");
            }
        }
    }
    drop(listener);
    // The dispatcher closes the agents' connections; those not logged in yet are closed here (one
    // accepted as the dispatcher stopped is not known to it, and would wait for its login timeout).
    let pending = ctx.slots.close_pending();
    clients.retain(|h| !h.is_finished());
    log::info!(
        "listener stopped ({} connections refused at the limit); {pending} not logged in closed; \
         waiting for {} clients",
        ctx.counters.refused.load(Ordering::Relaxed),
        clients.len()
    );
    for h in clients {
        let _ = h.join();
    }
}

/// Wakes a blocking `accept` on `addr` (an unspecified address is reached through loopback).
pub fn wake(addr: SocketAddr) {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match addr {
            SocketAddr::V4(_) => [127, 0, 0, 1].into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let _ = TcpStream::connect_timeout(&target, Duration::from_secs(1));
}
