//! The `dispatcher` thread: the one owner of the agent registry and of every client's outbound queue.
//!
//! Shell around [`Registry`] and [`Router`]: it answers the client threads' login questions, routes
//! notifications to the agent registered under an `EXT` by pushing onto that client's byte-bounded
//! [`OutQueue`] (a push never waits; one that would pass `CTI_CLIENT_QUEUE_BYTES` means the client has
//! stopped reading: it is cut, counted and logged — nobody ever waits for it), hands originate
//! requests to the AMI link, logs the statistics line every `STATS_INTERVAL`, expires legs older than
//! `MANAGER_LEG_MAX_AGE`, and at shutdown closes every client socket.
//! AMI input comes on one ordered channel ([`AmiInput`]): `Up`, batches of frames, `Lost`, `Down`.
//! It never touches the database and never blocks on a client.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, tick, Receiver, Sender};

use crate::admission::Slots;
use crate::ami::link::{AmiCommand, AmiInput, Backlog};
use crate::cti::outq::{Chunk, OutQueue, PushError};
pub use crate::cti::worker::ClientEvent;
use crate::logging::{escape, quote};
use crate::registry::{ClientId, Registry};
use crate::route::Router;
use crate::stats::{self, Counters, CutReason, Gauges};

struct Client {
    peer: SocketAddr,
    queue: OutQueue,
    sock: Arc<TcpStream>,
}

/// Counters of the dispatcher's own, logged at shutdown.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub delivered: u64,
    pub slow_clients_dropped: u64,
    pub originates_dropped: u64,
    pub ami_frames: u64,
}

/// The dispatcher's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `MANAGER_LEG_MAX_AGE` in seconds.
    pub leg_max_age: u64,
    /// `MANAGER_MAX_LEGS`.
    pub max_legs: usize,
    /// `STATS_INTERVAL`; zero = no statistics line.
    pub stats_interval: Duration,
}

/// Where the statistics also go (`METRICS_FILE`): the `metrics` thread writes what it is handed.
pub type MetricsSink = Option<Sender<String>>;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            leg_max_age: 86_400,
            max_legs: crate::calls::DEFAULT_MAX_LEGS,
            stats_interval: Duration::ZERO,
        }
    }
}

pub struct Dispatcher {
    registry: Registry,
    clients: HashMap<ClientId, Client>,
    stats: Stats,
    counters: Arc<Counters>,
    /// Where ORIG requests go (the AMI link).
    ami_commands: Sender<AmiCommand>,
    ami_up: bool,
    router: Router,
    /// Legs evicted at `MANAGER_MAX_LEGS` already logged and counted.
    evicted_reported: u64,
}

impl Dispatcher {
    pub fn new(ami_commands: Sender<AmiCommand>, counters: Arc<Counters>) -> Self {
        Dispatcher {
            registry: Registry::default(),
            clients: HashMap::new(),
            stats: Stats::default(),
            counters,
            ami_commands,
            ami_up: false,
            router: Router::default(),
            evicted_reported: 0,
        }
    }

    pub fn on_client(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Connected {
                id,
                peer,
                queue,
                sock,
            } => {
                self.clients.insert(id, Client { peer, queue, sock });
            }
            ClientEvent::QueryUser { username, reply } => {
                reply.send(self.registry.user_logged_in(&username));
            }
            ClientEvent::Register {
                id,
                username,
                ext,
                reply,
            } => {
                crate::vital::failpoint("dispatcher-register");
                let ok =
                    self.clients.contains_key(&id) && self.registry.register(id, &username, &ext);
                if ok {
                    let peer = self.clients.get(&id).map(|c| c.peer.to_string());
                    log::info!(
                        "client-{id} ({}) logged in as {} on {}",
                        peer.unwrap_or_default(),
                        quote(&username),
                        escape(&ext)
                    );
                }
                reply.send(ok);
            }
            ClientEvent::Originate { id, ext, request } => {
                let what = format!(
                    "client-{id} ({}) ORIG {}@{} priority {}",
                    escape(&ext),
                    escape(&request.exten),
                    escape(&request.context),
                    escape(&request.priority)
                );
                if !self.ami_up {
                    self.stats.originates_dropped += 1;
                    log::warn!("{what}: Asterisk is not connected, nothing sent");
                } else if self
                    .ami_commands
                    .try_send(AmiCommand::Originate { ext, request })
                    .is_err()
                {
                    self.stats.originates_dropped += 1;
                    log::warn!("{what}: the AMI link is not keeping up, dropped");
                }
            }
            ClientEvent::Disconnected { id } => {
                self.clients.remove(&id);
                if let Some(agent) = self.registry.remove(id) {
                    log::info!(
                        "client-{id} {} on {} logged out",
                        quote(&agent.username),
                        escape(&agent.ext)
                    );
                }
            }
        }
    }

    /// Queues `bytes` for the agent logged in on `ext`; false if none is (or it was just cut).
    pub fn deliver(&mut self, ext: &str, bytes: Vec<u8>) -> bool {
        self.deliver_n(ext, bytes, 1)
    }

    /// Queues `bytes`, which hold `count` notifications, in one push (one wake-up of the writer).
    fn deliver_n(&mut self, ext: &str, bytes: Vec<u8>, count: u64) -> bool {
        let Some(id) = self.registry.client_for(ext) else {
            return false;
        };
        let Some(client) = self.clients.get(&id) else {
            return false;
        };
        match client.queue.push(Chunk::Owned(bytes)) {
            Ok(()) => {
                self.stats.delivered += count;
                stats::add(&self.counters.notifications, count);
                true
            }
            Err(PushError::Full { queued, limit }) => {
                self.stats.slow_clients_dropped += 1;
                self.counters.cut(CutReason::QueueFull);
                log::warn!(
                    "client-{id} on {} cut: it is not reading its notifications \
                     ({queued} bytes queued, CTI_CLIENT_QUEUE_BYTES {limit})",
                    escape(ext)
                );
                let _ = client.sock.shutdown(Shutdown::Both);
                self.clients.remove(&id);
                self.registry.remove(id);
                false
            }
            Err(PushError::Closed) => false,
        }
    }

    /// Delivers notifications, everything for one agent in one push, in order.
    fn deliver_all(&mut self, notes: Vec<(String, String)>) {
        let mut per_agent: Vec<(String, Vec<u8>, u64)> = Vec::new();
        for (agent, wire) in notes {
            match per_agent.iter_mut().find(|(a, _, _)| *a == agent) {
                Some((_, bytes, n)) => {
                    bytes.extend_from_slice(wire.as_bytes());
                    *n += 1;
                }
                None => per_agent.push((agent, wire.into_bytes(), 1)),
            }
        }
        for (agent, bytes, n) in per_agent {
            self.deliver_n(&agent, bytes, n);
        }
    }

    /// One input from the AMI link, in order.
    pub fn on_ami(&mut self, input: AmiInput, backlog: &Backlog) {
        match input {
            AmiInput::Up { dialect, .. } => {
                self.ami_up = true;
                self.router.session(dialect);
            }
            AmiInput::Frames { frames, cost } => {
                // Everything one socket read brought, for each agent in one push: one wake-up of
                // its writer per batch, not per notification.
                self.stats.ami_frames += frames.len() as u64;
                let mut notes = Vec::new();
                for frame in &frames {
                    notes.extend(self.router.frame(frame));
                }
                backlog.done(cost, frames);
                self.deliver_all(notes);
            }
            AmiInput::Lost { frames } => {
                stats::add(&self.counters.ami_resyncs, 1);
                log::error!(
                    "{frames} AMI frames were lost (MANAGER_QUEUE_BYTES); resynchronising the \
                     calls from Asterisk's channel list"
                );
                self.router.begin_resync();
            }
            AmiInput::Down => {
                self.ami_up = false;
                self.router.down();
                log::warn!(
                    "Asterisk connection lost; calls in progress are kept until the channel list of \
                     the next session says which still exist"
                );
            }
        }
    }

    /// The clock (seconds since the dispatcher started) for the legs' ages.
    pub fn set_now(&mut self, secs: u64) {
        self.router.set_now(secs);
    }

    /// `MANAGER_MAX_LEGS`.
    pub fn set_max_legs(&mut self, max: usize) {
        self.router.set_max_legs(max);
    }

    /// Legs hung up at `MANAGER_MAX_LEGS` since the last call: counted with the expired ones,
    /// logged in one line.
    pub fn report_evicted(&mut self, max: usize) {
        let evicted = self.router.tracker().evicted;
        let n = evicted - self.evicted_reported;
        if n > 0 {
            self.evicted_reported = evicted;
            stats::add(&self.counters.legs_expired, n);
            log::warn!(
                "{n} call legs dropped, the oldest first: more than MANAGER_MAX_LEGS ({max}) \
                 were known (lost Hangups, or a flood of channels)"
            );
        }
    }

    /// Hangs up legs older than `max_age` seconds.
    pub fn expire(&mut self, max_age: u64) {
        let (notes, n) = self.router.expire(max_age);
        if n > 0 {
            stats::add(&self.counters.legs_expired, n as u64);
            log::warn!(
                "{n} call legs had no event for {max_age} s (MANAGER_LEG_MAX_AGE): dropped \
                 (their Hangup was lost)"
            );
        }
        self.deliver_all(notes);
    }

    pub fn gauges(&self, slots: Option<&Slots>) -> Gauges {
        let (clients, pending) = slots.map(Slots::counts).unwrap_or((self.clients.len(), 0));
        Gauges {
            clients,
            pending,
            agents: self.registry.len(),
            calls: self.router.tracker().calls(),
            legs: self.router.tracker().legs(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Closes every client connection (their threads then end by themselves).
    pub fn close_all(&mut self) {
        for (_, client) in self.clients.drain() {
            let _ = client.sock.shutdown(Shutdown::Both);
        }
    }
}

/// The dispatcher's inputs and its one output to the AMI link.
pub struct DispatcherChannels {
    pub clients: Receiver<ClientEvent>,
    pub ami: Receiver<AmiInput>,
    pub backlog: Backlog,
    pub ami_commands: Sender<AmiCommand>,
    pub counters: Arc<Counters>,
    pub slots: Arc<Slots>,
    /// Disconnected (its sender dropped) = stop.
    pub shutdown: Receiver<()>,
}

/// Legs are checked for their age this often.
const EXPIRE_EVERY: u64 = 60;

/// The thread body: runs until `shutdown` is disconnected.
pub fn run(ch: DispatcherChannels, settings: Settings, metrics: MetricsSink) {
    let mut d = Dispatcher::new(ch.ami_commands, ch.counters.clone());
    d.set_max_legs(settings.max_legs);
    let started = Instant::now();
    let ticker = tick(Duration::from_secs(1));
    let mut last_stats = started;
    let mut last_expire = 0;
    loop {
        select! {
            recv(ch.ami) -> input => if let Ok(input) = input { d.on_ami(input, &ch.backlog) },
            recv(ch.clients) -> ev => match ev {
                Ok(ev) => d.on_client(ev),
                Err(_) => break,
            },
            recv(ticker) -> _ => {
                let now = started.elapsed().as_secs();
                d.set_now(now);
                if now >= last_expire + EXPIRE_EVERY {
                    last_expire = now;
                    d.expire(settings.leg_max_age);
                }
                d.report_evicted(settings.max_legs);
                if !settings.stats_interval.is_zero()
                    && last_stats.elapsed() >= settings.stats_interval
                {
                    last_stats = Instant::now();
                    let g = d.gauges(Some(&ch.slots));
                    log::info!("{}", ch.counters.line(g));
                    if let Some(m) = &metrics {
                        // The file is written on its own thread; a slow disk never holds this one.
                        let _ = m.try_send(ch.counters.prometheus(g));
                    }
                }
            },
            recv(ch.shutdown) -> _ => break,
        }
    }
    d.close_all();
    let s = d.stats();
    log::info!("{}", ch.counters.line(d.gauges(Some(&ch.slots))));
    log::info!(
        "dispatcher stopped: {} AMI frames, {} notifications delivered, {} slow clients cut, \
         {} originates dropped",
        s.ami_frames,
        s.delivered,
        s.slow_clients_dropped,
        s.originates_dropped
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ami::OrigRequest;
    use crate::cti::outq::{self, QueueConfig};
    use crossbeam_channel::unbounded;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A connected loopback socket pair: (server side, client side).
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (s, c)
    }

    fn dispatcher() -> (Dispatcher, Receiver<AmiCommand>) {
        let (cmd_tx, cmd_rx) = unbounded();
        (
            Dispatcher::new(cmd_tx, Arc::new(Counters::default())),
            cmd_rx,
        )
    }

    /// Logs a client in on `ext` with a queue of `bytes`; its socket's other end. `full`: the
    /// socket's buffers are filled first, so that everything delivered waits in the queue.
    fn login_with(
        d: &mut Dispatcher,
        id: ClientId,
        ext: &str,
        bytes: usize,
        full: bool,
    ) -> TcpStream {
        let (mut sock, client) = pair();
        if full {
            // Small fixed buffers (no autotuning), filled until a round takes nothing.
            socket2::SockRef::from(&client)
                .set_recv_buffer_size(4096)
                .unwrap();
            socket2::SockRef::from(&sock)
                .set_send_buffer_size(4096)
                .unwrap();
            sock.set_nonblocking(true).unwrap();
            let chunk = vec![b'.'; 64 * 1024];
            loop {
                let mut took = 0;
                while let Ok(n) = sock.write(&chunk) {
                    took += n;
                }
                if took == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            sock.set_nonblocking(false).unwrap();
        }
        let sock = Arc::new(sock);
        let (queue, finisher) = outq::start(
            sock.clone(),
            QueueConfig {
                id,
                limit: bytes,
                write_timeout: Duration::from_secs(60),
                counters: Arc::new(Counters::default()),
            },
        )
        .unwrap();
        std::mem::forget(finisher);
        d.on_client(ClientEvent::Connected {
            id,
            peer: sock.peer_addr().unwrap(),
            queue,
            sock,
        });
        let (reply, ok) = crate::oneshot::oneshot();
        d.on_client(ClientEvent::Register {
            id,
            username: format!("u{id}"),
            ext: ext.into(),
            reply,
        });
        assert_eq!(
            ok.recv_deadline(std::time::Instant::now() + Duration::from_secs(5)),
            Some(true)
        );
        client
    }

    fn login(d: &mut Dispatcher, id: ClientId, ext: &str, bytes: usize) -> TcpStream {
        login_with(d, id, ext, bytes, false)
    }

    /// What arrives on `c` until it has been quiet for 200 ms.
    fn received(c: &mut TcpStream) -> String {
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(all).unwrap()
    }

    #[test]
    fn a_client_past_its_byte_bound_is_cut_and_nobody_waits() {
        let (mut d, _cmd) = dispatcher();
        let mut slow_client = login_with(&mut d, 1, "SIP/201", 10, true);
        let mut fast_client = login(&mut d, 2, "SIP/202", 10);
        assert!(d.deliver("SIP/201", b"12345".to_vec()));
        assert!(
            d.deliver("SIP/201", b"67890".to_vec()),
            "exactly at the bound"
        );
        // One byte more does not fit: the client is cut at once, not waited for.
        assert!(!d.deliver("SIP/201", b"x".to_vec()));
        assert_eq!(d.stats().slow_clients_dropped, 1);
        assert_eq!(
            d.counters
                .cut_queue_full
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert!(!d.deliver("SIP/201", b"y".to_vec()), "no longer registered");
        // Its socket was shut down: what the buffers held, then the end.
        slow_client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut rest = Vec::new();
        slow_client
            .read_to_end(&mut rest)
            .expect("its socket was shut down");
        // The other agent is served as before.
        assert!(d.deliver("SIP/202", b"z".to_vec()));
        assert!(d.deliver("SIP/202", b"w".to_vec()));
        assert_eq!(received(&mut fast_client), "zw");
        assert_eq!(d.stats().delivered, 4);
    }

    fn frames(texts: &[&str]) -> AmiInput {
        let mut dec = crate::ami::frame::Decoder::default();
        let mut frames = Vec::new();
        for text in texts {
            dec.push(text.as_bytes());
            match dec.next_item() {
                Some(crate::ami::frame::Item::Frame(f)) => frames.push(f),
                other => panic!("{other:?}"),
            }
        }
        let cost = frames.iter().map(crate::ami::frame::Frame::cost).sum();
        AmiInput::Frames { frames, cost }
    }

    #[test]
    fn ami_down_keeps_calls_until_the_next_list_and_originates_wait_for_up() {
        use crate::ami::dialect::Dialect;
        let (mut d, cmd_rx) = dispatcher();
        let backlog = Backlog::default();
        let mut c = login(&mut d, 1, "SIP/201", 1 << 20);
        let up = || AmiInput::Up {
            dialect: Dialect::V12Plus,
            version: "5.0".into(),
        };
        d.on_ami(up(), &backlog);
        let input = frames(&[
            "Event: Newchannel\r\nChannel: SIP/201-1\r\nUniqueid: U\r\n\r\n",
            "Event: Newchannel\r\nChannel: SIP/201-2\r\nUniqueid: V\r\n\r\n",
        ]);
        let AmiInput::Frames { cost, .. } = &input else {
            unreachable!()
        };
        backlog.add(*cost);
        d.on_ami(input, &backlog);
        assert_eq!(backlog.get(), 0, "the batch's cost is given back");
        d.on_ami(AmiInput::Down, &backlog);
        assert_eq!(d.router.tracker().legs(), 2, "Down forgets nothing yet");
        // While down, ORIG requests go nowhere.
        d.on_client(ClientEvent::Originate {
            id: 1,
            ext: "SIP/201".into(),
            request: OrigRequest {
                exten: "1".into(),
                context: "c".into(),
                priority: "1".into(),
            },
        });
        assert!(cmd_rx.try_recv().is_err());
        assert_eq!(d.stats().originates_dropped, 1);
        // The next session lists V only: U died with the old session and gets its Hangup, once.
        d.on_ami(up(), &backlog);
        d.on_ami(
            frames(&[
                "Event: CoreShowChannel\r\nChannel: SIP/201-2\r\nUniqueid: V\r\n\r\n",
                "Event: CoreShowChannelsComplete\r\nListItems: 1\r\n\r\n",
                "Event: StatusComplete\r\nItems: 1\r\n\r\n",
            ]),
            &backlog,
        );
        assert_eq!(d.router.tracker().legs(), 1);
        let text = received(&mut c);
        assert_eq!(text.matches("<event id=\"Hangup\">").count(), 1, "{text}");
        assert!(text.contains("SIP/201-1"), "{text}");
    }

    #[test]
    fn lost_frames_resync_hangs_up_what_the_list_does_not_name() {
        use crate::ami::dialect::Dialect;
        let (mut d, _cmd) = dispatcher();
        let backlog = Backlog::default();
        let mut c = login(&mut d, 1, "SIP/201", 1 << 20);
        d.on_ami(
            AmiInput::Up {
                dialect: Dialect::V12Plus,
                version: "5.0".into(),
            },
            &backlog,
        );
        d.on_ami(
            frames(&[
                "Event: Newchannel\r\nChannel: SIP/201-1\r\nUniqueid: A\r\n\r\n",
                "Event: Newchannel\r\nChannel: SIP/202-2\r\nUniqueid: B\r\n\r\n",
            ]),
            &backlog,
        );
        assert_eq!(d.router.tracker().legs(), 2);
        // Frames were lost (A's Hangup among them); the list names only B.
        d.on_ami(AmiInput::Lost { frames: 7 }, &backlog);
        d.on_ami(
            frames(&[
                "Event: CoreShowChannel\r\nChannel: SIP/202-2\r\nUniqueid: B\r\n\r\n",
                "Event: Newchannel\r\nChannel: SIP/203-3\r\nUniqueid: C\r\n\r\n",
                "Event: CoreShowChannelsComplete\r\nListItems: 1\r\n\r\n",
            ]),
            &backlog,
        );
        assert_eq!(d.router.tracker().legs(), 2, "B listed, C new, A gone");
        let text = received(&mut c);
        assert!(text.contains("Hangup"), "the agent on A is told: {text}");
        assert!(text.contains("SIP/201-1"), "{text}");
        assert_eq!(
            d.counters
                .ami_resyncs
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn legs_older_than_the_max_age_are_hung_up_and_counted() {
        use crate::ami::dialect::Dialect;
        let (mut d, _cmd) = dispatcher();
        let backlog = Backlog::default();
        d.on_ami(
            AmiInput::Up {
                dialect: Dialect::V12Plus,
                version: "5.0".into(),
            },
            &backlog,
        );
        d.set_now(100);
        d.on_ami(
            frames(&["Event: Newchannel\r\nChannel: SIP/201-1\r\nUniqueid: A\r\n\r\n"]),
            &backlog,
        );
        d.set_now(150);
        d.on_ami(
            frames(&["Event: Newchannel\r\nChannel: SIP/202-2\r\nUniqueid: B\r\n\r\n"]),
            &backlog,
        );
        d.set_now(160);
        d.expire(60);
        assert_eq!(d.router.tracker().legs(), 2, "at the bound: kept");
        d.set_now(161);
        d.expire(60);
        assert_eq!(d.router.tracker().legs(), 1, "one second over: A expired");
        assert_eq!(
            d.counters
                .legs_expired
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
}
