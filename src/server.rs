//! Wiring: starts the `dispatcher`, `ami-link`, `ami-record` and `listener` threads, and stops them.
//!
//! Shell. [`Server::start`] binds the listening socket (port 0 picks a free one, which tests use);
//! [`Server::stop`] stops accepting, closes every client and the AMI session, and joins every thread.
//! Stopping is one dropped channel: every thread's stop receiver then reports "disconnected".

use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::ami::link::{self, LinkChannels, LinkConfig, FRAME_QUEUE};
use crate::ami::session::SessionConfig;
use crate::config::Config;
use crate::cti::worker::WorkerContext;
use crate::dispatcher::{self, DispatcherChannels};
use crate::listener;
use crate::store::Store;

/// Bound of the client-events channel into the dispatcher.
const CLIENT_EVENTS: usize = 4096;
/// Originate requests waiting for the AMI link.
const AMI_COMMANDS: usize = 256;

/// Options from the command line that reach the threads.
#[derive(Debug, Default)]
pub struct RunOptions {
    pub dumpconfig: bool,
    /// `--record-ami`: the opened file every AMI byte is appended to.
    pub record: Option<File>,
}

pub struct Server {
    addr: SocketAddr,
    stop_accepting: Arc<AtomicBool>,
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
    listener: JoinHandle<()>,
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, String> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| format!("cannot start thread {name}: {e}"))
}

fn recorder(mut file: File, rx: Receiver<Vec<u8>>) {
    for chunk in rx.iter() {
        if let Err(e) = file.write_all(&chunk) {
            log::error!("--record-ami: write failed ({e}); recording stopped");
            for _ in rx.iter() {}
            return;
        }
    }
    let _ = file.flush();
}

impl Server {
    pub fn start(
        config: &Config,
        store: Arc<dyn Store>,
        opts: RunOptions,
    ) -> Result<Server, String> {
        let bind = SocketAddr::new(config.cti.listen_ip, config.cti.listen_port);
        let sock = TcpListener::bind(bind).map_err(|e| {
            format!("cannot listen on {bind} (CTI_SERVER_LISTEN_IP/CTI_SERVER_LISTEN_PORT): {e}")
        })?;
        let addr = sock.local_addr().map_err(|e| e.to_string())?;
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let (events_tx, events_rx) = bounded(CLIENT_EVENTS);
        let (frames_tx, frames_rx) = bounded(FRAME_QUEUE);
        let (status_tx, status_rx) = unbounded();
        let (commands_tx, commands_rx) = bounded(AMI_COMMANDS);
        let mut threads = Vec::new();

        let record = match opts.record {
            Some(file) => {
                let (tx, rx) = unbounded();
                threads.push(spawn("ami-record", move || recorder(file, rx))?);
                Some(tx)
            }
            None => None,
        };
        let m = &config.manager;
        let link_cfg = LinkConfig::new(
            &m.host,
            m.port,
            SessionConfig {
                user: m.user.clone(),
                secret: m.pass.clone(),
                idle: m.socket_timeout,
                dumpconfig: opts.dumpconfig,
            },
        );
        let link_ch = LinkChannels {
            frames: frames_tx,
            status: status_tx,
            commands: commands_rx,
            shutdown: stop_rx.clone(),
            record,
        };
        threads.push(spawn("ami-link", move || link::run(link_cfg, link_ch))?);
        let disp_ch = DispatcherChannels {
            clients: events_rx,
            ami_frames: frames_rx,
            ami_status: status_rx,
            ami_commands: commands_tx,
            shutdown: stop_rx,
        };
        threads.push(spawn("dispatcher", move || dispatcher::run(disp_ch))?);

        let ctx = WorkerContext {
            store,
            events: events_tx,
            client_timeout: config.cti.client_timeout,
            login_timeout: config.cti.login_timeout,
            keepalive: config.cti.keepalive,
            originate_contexts: config.cti.originate_contexts.clone(),
        };
        let stop_accepting = Arc::new(AtomicBool::new(false));
        let max = config.cti.max_clients;
        let flag = stop_accepting.clone();
        let listener = spawn("listener", move || listener::run(sock, ctx, max, flag))?;
        log::info!("CTI server listening on {addr}");
        Ok(Server {
            addr,
            stop_accepting,
            stop: Some(stop_tx),
            threads,
            listener,
        })
    }

    /// Stops accepting, closes every client and the AMI session, joins every thread.
    pub fn stop(mut self) {
        self.stop_accepting.store(true, Ordering::SeqCst);
        listener::wake(self.addr);
        drop(self.stop.take());
        for t in self.threads {
            let _ = t.join();
        }
        let _ = self.listener.join();
        log::info!("CTI server stopped");
    }
}
