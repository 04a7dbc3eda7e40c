//! Wiring: starts the `dispatcher`, `ami-link`, `ami-record` and `listener` threads, and stops them.
//!
//! Shell. [`Server::start`] binds the listening socket (port 0 picks a free one, which tests use);
//! [`Server::stop`] stops accepting, closes every client and the AMI session, and joins every thread.
//! Stopping is one dropped channel: every thread's stop receiver then reports "disconnected".

use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::admission::{Limits, Slots};
use crate::ami::link::{self, Backlog, LinkChannels, LinkConfig};
use crate::ami::session::SessionConfig;
use crate::config::Config;
use crate::cti::worker::{ClientSettings, SharedSettings, WorkerContext};
use crate::dispatcher::{self, DispatcherChannels, Settings};
use crate::listener;
use crate::stats::Counters;
use crate::store::{self, Store};

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
    slots: Arc<Slots>,
    throttle: Arc<crate::throttle::Throttle>,
    settings: SharedSettings,
    stop_accepting: Arc<AtomicBool>,
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
    listener: JoinHandle<()>,
}

/// Every thread started here is one of a kind: its death ends the process ([`crate::vital`]).
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, String> {
    crate::vital::spawn(name, f)
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

/// The admission limits of `config` (`CTI_MAX_CLIENTS` already fitted to the descriptor limit).
pub fn limits(config: &Config) -> Limits {
    Limits {
        max_clients: config.cti.max_clients,
        max_pending: config.cti.max_pending,
        max_pending_per_ip: config.cti.max_pending_per_ip,
    }
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
        // Bounded in bytes by `backlog` (MANAGER_QUEUE_BYTES), never by blocking the AMI reader.
        let (ami_tx, ami_rx) = unbounded();
        let backlog = Backlog::default();
        let (commands_tx, commands_rx) = bounded(AMI_COMMANDS);
        let counters = Arc::new(Counters::default());
        let slots = Arc::new(Slots::new(limits(config)));
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
            input: ami_tx,
            backlog: backlog.clone(),
            queue_bytes: m.queue_bytes,
            counters: counters.clone(),
            commands: commands_rx,
            shutdown: stop_rx.clone(),
            record,
        };
        threads.push(spawn("ami-link", move || link::run(link_cfg, link_ch))?);
        let disp_ch = DispatcherChannels {
            clients: events_rx,
            ami: ami_rx,
            backlog,
            ami_commands: commands_tx,
            counters: counters.clone(),
            slots: slots.clone(),
            shutdown: stop_rx,
        };
        let settings = Settings {
            leg_max_age: m.leg_max_age.as_secs(),
            max_legs: m.max_legs,
            stats_interval: config.logging.stats_interval,
        };
        let metrics = match &config.logging.metrics_file {
            Some(path) => {
                let (tx, rx) = bounded::<String>(1);
                let path = path.clone();
                threads.push(spawn("metrics", move || {
                    for text in rx.iter() {
                        if let Err(e) = crate::stats::write_atomically(&path, &text) {
                            log::warn!("METRICS_FILE {}: {e}", path.display());
                        }
                    }
                })?);
                Some(tx)
            }
            None => None,
        };
        threads.push(spawn("dispatcher", move || {
            dispatcher::run(disp_ch, settings, metrics)
        })?);

        // The login threads end when the last client context is dropped (after the listener);
        // they are not joined: one may be waiting on a frozen database for MYSQL_TIMEOUT.
        let db = &config.database;
        let (logins, _db_threads) =
            store::start_logins(store, db.pool_size, db.timeout, counters.clone())?;
        let throttle = Arc::new(crate::throttle::Throttle::new(config.cti.login_throttle));
        let settings: SharedSettings = Arc::new(Mutex::new(Arc::new(ClientSettings::from_config(
            &config.cti,
        ))));
        let ctx = WorkerContext {
            logins,
            events: events_tx,
            slots: slots.clone(),
            counters,
            settings: settings.clone(),
            throttle: throttle.clone(),
            dial_rate: Arc::default(),
        };
        // The one thread that retries clients whose socket was full (Unix; part of the baseline).
        crate::cti::outq::start_flusher();
        let stop_accepting = Arc::new(AtomicBool::new(false));
        let flag = stop_accepting.clone();
        let listener = spawn("listener", move || listener::run(sock, ctx, flag))?;
        log::info!("CTI server listening on {addr}");
        Ok(Server {
            addr,
            slots,
            throttle,
            settings,
            stop_accepting,
            stop: Some(stop_tx),
            threads,
            listener,
        })
    }

    /// Applies the reloadable settings of `config` (SIGHUP): admission limits now, client settings
    /// to the connections accepted from now on.
    pub fn apply(&self, config: &Config) {
        self.slots.set_limits(limits(config));
        self.throttle
            .with(|t| t.set_limits(config.cti.login_throttle));
        *self.settings.lock().unwrap_or_else(PoisonError::into_inner) =
            Arc::new(ClientSettings::from_config(&config.cti));
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
