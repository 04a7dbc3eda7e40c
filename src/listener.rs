//! The `listener` thread: blocking accept loop, client limit, one `client-N` thread per connection.
//!
//! Shell. At the limit (`CTI_MAX_CLIENTS`) a new connection is closed at once, without the welcome,
//! and logged. Stopping: the server sets the stop flag and connects to the listening address to wake
//! `accept`; the loop then joins every client thread it started (the dispatcher has closed their
//! sockets by then).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::cti::worker::{self, WorkerContext};
use crate::registry::ClientId;

/// Stack of a client reader thread (the MySQL client runs on it).
const CLIENT_STACK: usize = 512 * 1024;

pub fn run(listener: TcpListener, ctx: WorkerContext, max_clients: usize, stop: Arc<AtomicBool>) {
    let mut clients: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id: ClientId = 0;
    let mut refused: u64 = 0;
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let sock = match conn {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: do not spin.
                log::warn!("accept failed: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let peer = sock
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        clients.retain(|h| !h.is_finished());
        if clients.len() >= max_clients {
            refused += 1;
            log::warn!("client limit ({max_clients}) reached: connection from {peer} closed");
            drop(sock);
            continue;
        }
        next_id += 1;
        let id = next_id;
        let ctx = ctx.clone();
        match thread::Builder::new()
            .name(format!("client-{id}"))
            .stack_size(CLIENT_STACK)
            .spawn(move || worker::serve(id, sock, peer, ctx))
        {
            Ok(h) => clients.push(h),
            Err(e) => log::error!("cannot start a thread for {peer}: {e}"),
        }
    }
    drop(listener);
    clients.retain(|h| !h.is_finished());
    log::info!(
        "listener stopped ({refused} connections refused at the limit); waiting for {} clients",
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
