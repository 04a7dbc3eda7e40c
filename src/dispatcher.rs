//! The `dispatcher` thread: the one owner of the agent registry and of every client's outbound queue.
//!
//! Shell around [`Registry`]: it answers the client threads' login questions, routes notifications to
//! the agent registered under an `EXT` with `try_send` on that client's bounded queue (a full queue
//! means the client is too slow: it is disconnected, counted and logged — nobody ever waits for it),
//! hands originate requests to the AMI link, and at shutdown closes every client socket.
//! It never touches the database and never blocks on a client.

use std::net::{Shutdown, SocketAddr, TcpStream};

use crossbeam_channel::{select, Receiver, Sender, TrySendError};

use crate::ami::link::{AmiCommand, AmiFrame, AmiStatus};
use crate::cti::proto::OrigRequest;
use crate::registry::{ClientId, Registry};
use crate::route::Router;

/// Bytes queued for one client's writer thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    Reply(&'static [u8]),
    Event(Vec<u8>),
}

impl Outbound {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Outbound::Reply(b) => b,
            Outbound::Event(b) => b,
        }
    }
}

/// What client threads tell the dispatcher.
#[derive(Debug)]
pub enum ClientEvent {
    Connected {
        id: ClientId,
        peer: SocketAddr,
        tx: Sender<Outbound>,
        sock: TcpStream,
    },
    QueryUser {
        username: String,
        reply: Sender<bool>,
    },
    Register {
        id: ClientId,
        username: String,
        ext: String,
        reply: Sender<bool>,
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

struct Client {
    peer: SocketAddr,
    tx: Sender<Outbound>,
    sock: TcpStream,
}

/// Counters, logged at shutdown.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub delivered: u64,
    pub slow_clients_dropped: u64,
    pub originates_dropped: u64,
    pub ami_frames: u64,
    /// Frames of an AMI session already reported down.
    pub stale_frames: u64,
}

pub struct Dispatcher {
    registry: Registry,
    clients: std::collections::HashMap<ClientId, Client>,
    stats: Stats,
    /// Where ORIG requests go (the AMI link).
    ami_commands: Sender<AmiCommand>,
    /// The AMI session that is up, if any.
    ami_session: Option<u64>,
    router: Router,
}

impl Dispatcher {
    pub fn new(ami_commands: Sender<AmiCommand>) -> Self {
        Dispatcher {
            registry: Registry::default(),
            clients: Default::default(),
            stats: Stats::default(),
            ami_commands,
            ami_session: None,
            router: Router::default(),
        }
    }

    pub fn on_client(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Connected { id, peer, tx, sock } => {
                self.clients.insert(id, Client { peer, tx, sock });
            }
            ClientEvent::QueryUser { username, reply } => {
                let _ = reply.send(self.registry.user_logged_in(&username));
            }
            ClientEvent::Register {
                id,
                username,
                ext,
                reply,
            } => {
                let ok =
                    self.clients.contains_key(&id) && self.registry.register(id, &username, &ext);
                if ok {
                    let peer = self.clients.get(&id).map(|c| c.peer.to_string());
                    log::info!(
                        "client-{id} ({}) logged in as {username:?} on {ext}",
                        peer.unwrap_or_default()
                    );
                }
                let _ = reply.send(ok);
            }
            ClientEvent::Originate { id, ext, request } => {
                let what = format!(
                    "client-{id} ({ext}) ORIG {}@{} priority {}",
                    request.exten, request.context, request.priority
                );
                if self.ami_session.is_none() {
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
                        "client-{id} {:?} on {} logged out",
                        agent.username,
                        agent.ext
                    );
                }
            }
        }
    }

    /// Queues `bytes` for the agent logged in on `ext`; false if none is.
    pub fn deliver(&mut self, ext: &str, bytes: Vec<u8>) -> bool {
        let Some(id) = self.registry.client_for(ext) else {
            return false;
        };
        let Some(client) = self.clients.get(&id) else {
            return false;
        };
        match client.tx.try_send(Outbound::Event(bytes)) {
            Ok(()) => {
                self.stats.delivered += 1;
                true
            }
            Err(TrySendError::Full(_)) => {
                self.stats.slow_clients_dropped += 1;
                log::warn!(
                    "client-{id} on {ext} is not reading its notifications (queue full): disconnected"
                );
                let _ = client.sock.shutdown(Shutdown::Both);
                self.clients.remove(&id);
                self.registry.remove(id);
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    pub fn on_ami_status(&mut self, status: AmiStatus) {
        match status {
            AmiStatus::Up {
                session, dialect, ..
            } => {
                self.ami_session = Some(session);
                self.router.session(dialect);
            }
            AmiStatus::Dialect { dialect, .. } => self.router.set_dialect(dialect),
            AmiStatus::Down { session } => {
                if self.ami_session == Some(session) {
                    self.ami_session = None;
                    self.router.down();
                }
                log::warn!(
                    "Asterisk connection lost (AMI session {session}); calls in progress forgotten"
                );
            }
        }
    }

    pub fn on_ami_frame(&mut self, frame: AmiFrame) {
        if self.ami_session != Some(frame.session) {
            self.stats.stale_frames += 1;
            return;
        }
        self.stats.ami_frames += 1;
        for (agent, wire) in self.router.frame(&frame.frame) {
            if self.deliver(&agent, wire.into_bytes()) {
                log::debug!("notification sent to {agent}");
            }
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
    pub ami_frames: Receiver<AmiFrame>,
    pub ami_status: Receiver<AmiStatus>,
    pub ami_commands: Sender<AmiCommand>,
    /// Disconnected (its sender dropped) = stop.
    pub shutdown: Receiver<()>,
}

/// The thread body: runs until `shutdown` is disconnected.
pub fn run(ch: DispatcherChannels) {
    let mut d = Dispatcher::new(ch.ami_commands);
    loop {
        select! {
            recv(ch.ami_status) -> st => if let Ok(st) = st { d.on_ami_status(st) },
            recv(ch.ami_frames) -> f => if let Ok(f) = f {
                // The link sends a session's Up before its first frame: take every status that is
                // already waiting, so a frame is never judged against an older session.
                while let Ok(st) = ch.ami_status.try_recv() {
                    d.on_ami_status(st);
                }
                d.on_ami_frame(f)
            },
            recv(ch.clients) -> ev => match ev {
                Ok(ev) => d.on_client(ev),
                Err(_) => break,
            },
            recv(ch.shutdown) -> _ => break,
        }
    }
    d.close_all();
    let s = d.stats();
    log::info!(
        "dispatcher stopped: {} AMI frames ({} of closed sessions), {} notifications delivered, {} slow clients dropped, {} originates dropped",
        s.ami_frames,
        s.stale_frames,
        s.delivered,
        s.slow_clients_dropped,
        s.originates_dropped
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{bounded, unbounded};
    use std::net::TcpListener;

    /// A connected loopback socket pair: (server side, client side).
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (s, c)
    }

    fn login(
        d: &mut Dispatcher,
        id: ClientId,
        ext: &str,
        cap: usize,
    ) -> (Receiver<Outbound>, TcpStream) {
        let (tx, rx) = bounded(cap);
        let (sock, client) = pair();
        d.on_client(ClientEvent::Connected {
            id,
            peer: sock.peer_addr().unwrap(),
            tx,
            sock,
        });
        let (reply, ok) = bounded(1);
        d.on_client(ClientEvent::Register {
            id,
            username: format!("u{id}"),
            ext: ext.into(),
            reply,
        });
        assert!(ok.recv().unwrap());
        (rx, client)
    }

    #[test]
    fn a_client_whose_queue_is_full_is_dropped_and_nobody_waits() {
        let (cmd_tx, _cmd_rx) = unbounded();
        let mut d = Dispatcher::new(cmd_tx);
        let (_slow_rx, mut slow_client) = login(&mut d, 1, "SIP/201", 4);
        let (fast_rx, _fast_client) = login(&mut d, 2, "SIP/202", 4);
        for i in 0..4 {
            assert!(d.deliver("SIP/201", vec![b'a' + i]));
        }
        // The 5th does not fit: the slow client is disconnected at once, not waited for.
        assert!(!d.deliver("SIP/201", b"x".to_vec()));
        assert_eq!(d.stats().slow_clients_dropped, 1);
        assert!(!d.deliver("SIP/201", b"y".to_vec()), "no longer registered");
        use std::io::Read;
        slow_client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 8];
        assert_eq!(
            slow_client.read(&mut b).unwrap(),
            0,
            "its socket was shut down"
        );
        // The other agent is served as before.
        assert!(d.deliver("SIP/202", b"z".to_vec()));
        assert_eq!(fast_rx.try_recv().unwrap(), Outbound::Event(b"z".to_vec()));
        assert_eq!(d.stats().delivered, 5);
    }

    #[test]
    fn ami_down_forgets_calls_and_stale_frames_are_ignored() {
        use crate::ami::dialect::Dialect;
        let (cmd_tx, cmd_rx) = unbounded();
        let mut d = Dispatcher::new(cmd_tx);
        let frame = |text: &str| {
            let mut dec = crate::ami::frame::Decoder::default();
            dec.push(text.as_bytes());
            match dec.next_item() {
                Some(crate::ami::frame::Item::Frame(f)) => f,
                other => panic!("{other:?}"),
            }
        };
        d.on_ami_status(AmiStatus::Up {
            session: 1,
            dialect: Dialect::V1_4,
            version: "1.0".into(),
        });
        d.on_ami_frame(AmiFrame {
            session: 1,
            frame: frame("Event: Newchannel\r\nChannel: SIP/201-1\r\nUniqueid: U\r\n\r\n"),
        });
        assert_eq!(d.router.tracker().legs(), 1);
        d.on_ami_status(AmiStatus::Down { session: 1 });
        assert_eq!(d.router.tracker().legs(), 0, "Down clears every call");
        d.on_ami_frame(AmiFrame {
            session: 1,
            frame: frame("Event: Newchannel\r\nChannel: SIP/201-1\r\nUniqueid: V\r\n\r\n"),
        });
        assert_eq!(d.stats().stale_frames, 1);
        assert_eq!(d.router.tracker().legs(), 0);
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
    }
}
