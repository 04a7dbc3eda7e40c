//! Wiring: starts the `dispatcher` and `listener` threads, and stops them in order.
//!
//! Shell. [`Server::start`] binds the listening socket (port 0 picks a free one, which tests use);
//! [`Server::stop`] stops accepting, closes every client, and joins every thread.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{bounded, unbounded, Sender};

use crate::config::Config;
use crate::cti::worker::WorkerContext;
use crate::store::Store;
use crate::{dispatcher, listener};

/// Bound of the client-events channel into the dispatcher.
const CLIENT_EVENTS: usize = 4096;

pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    shutdown: Sender<()>,
    dispatcher: JoinHandle<()>,
    listener: JoinHandle<()>,
}

impl Server {
    pub fn start(config: &Config, store: Arc<dyn Store>) -> Result<Server, String> {
        let bind = SocketAddr::new(config.cti.listen_ip, config.cti.listen_port);
        let sock = TcpListener::bind(bind).map_err(|e| {
            format!("cannot listen on {bind} (CTI_SERVER_LISTEN_IP/CTI_SERVER_LISTEN_PORT): {e}")
        })?;
        let addr = sock.local_addr().map_err(|e| e.to_string())?;
        let (events_tx, events_rx) = bounded(CLIENT_EVENTS);
        let (shutdown_tx, shutdown_rx) = unbounded();
        let dispatcher = thread::Builder::new()
            .name("dispatcher".into())
            .spawn(move || dispatcher::run(events_rx, shutdown_rx))
            .map_err(|e| format!("cannot start the dispatcher: {e}"))?;
        let ctx = WorkerContext {
            store,
            events: events_tx,
            client_timeout: config.cti.client_timeout,
            login_timeout: config.cti.login_timeout,
            keepalive: config.cti.keepalive,
            originate_contexts: config.cti.originate_contexts.clone(),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let max = config.cti.max_clients;
        let stop_l = stop.clone();
        let listener = thread::Builder::new()
            .name("listener".into())
            .spawn(move || listener::run(sock, ctx, max, stop_l))
            .map_err(|e| format!("cannot start the listener: {e}"))?;
        log::info!("CTI server listening on {addr}");
        Ok(Server {
            addr,
            stop,
            shutdown: shutdown_tx,
            dispatcher,
            listener,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes every client, joins every thread.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        listener::wake(self.addr);
        let _ = self.shutdown.send(());
        let _ = self.dispatcher.join();
        let _ = self.listener.join();
        log::info!("CTI server stopped");
    }
}
