//! The `dispatcher` thread: the one owner of the agent registry and of every client's outbound queue.
//!
//! Shell around [`Registry`]: it answers the client threads' login questions, routes notifications to
//! the agent registered under an `EXT` with `try_send` on that client's bounded queue (a full queue
//! means the client is too slow: it is disconnected, counted and logged — nobody ever waits for it),
//! hands originate requests to the AMI link, and at shutdown closes every client socket.
//! It never touches the database and never blocks on a client.

use std::net::{Shutdown, SocketAddr, TcpStream};

use crossbeam_channel::{select, Receiver, Sender, TrySendError};

use crate::cti::proto::OrigRequest;
use crate::registry::{ClientId, Registry};

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
}

pub struct Dispatcher {
    registry: Registry,
    clients: std::collections::HashMap<ClientId, Client>,
    stats: Stats,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self::new()
    }
}

impl Dispatcher {
    pub fn new() -> Self {
        Dispatcher {
            registry: Registry::default(),
            clients: Default::default(),
            stats: Stats::default(),
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
                self.stats.originates_dropped += 1;
                log::warn!(
                    "client-{id} ({ext}) ORIG {}@{} priority {}: no Asterisk link, nothing sent",
                    request.exten,
                    request.context,
                    request.priority
                );
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

/// The thread body: runs until `shutdown` fires or every sender is gone.
pub fn run(events: Receiver<ClientEvent>, shutdown: Receiver<()>) {
    let mut d = Dispatcher::new();
    loop {
        select! {
            recv(events) -> ev => match ev {
                Ok(ev) => d.on_client(ev),
                Err(_) => break,
            },
            recv(shutdown) -> _ => break,
        }
    }
    d.close_all();
    let s = d.stats();
    log::info!(
        "dispatcher stopped: {} notifications delivered, {} slow clients dropped, {} originates dropped",
        s.delivered,
        s.slow_clients_dropped,
        s.originates_dropped
    );
}
