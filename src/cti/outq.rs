//! One client's outbound queue: bounded in **bytes**, sent in as few `write` calls as the socket
//! takes.
//!
//! Core of the delivery rule "a client that reads never loses a notification": the dispatcher and
//! the client's reader push whole messages (notifications, replies) with `OutQueue::push`, which
//! never waits. The bound (`CTI_CLIENT_QUEUE_BYTES`) counts bytes pushed and not yet taken by the
//! socket; a push that would pass it fails with [`PushError::Full`] and the caller cuts the client.
//! A message is never dropped silently: it is sent, queued whole, or refused (and the client cut).
//!
//! Two implementations with one API ([`start`], `OutQueue::push`, [`Finisher::finish`]):
//! - Unix (`direct`): the pushing thread sends at once with a non-blocking `send` (`MSG_DONTWAIT`,
//!   so it never waits however slow the client); what the socket does not take waits in the queue
//!   and is sent by later pushes or by the one `client-flush` thread, which retries such clients
//!   every few milliseconds and cuts one that makes no progress for `CTI_CLIENT_WRITE_TIMEOUT`. No
//!   thread per client for writing.
//! - Elsewhere (Windows, `threaded`): a writer thread per client (`client-N-w`) takes everything
//!   queued at once and writes it in one blocking call with the write timeout (Winsock has no
//!   per-call non-blocking send).

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::registry::ClientId;
use crate::stats::Counters;

/// Most bytes handed to one `write` call.
pub const MAX_BATCH: usize = 256 * 1024;

/// A message for the client: a fixed reply or owned notification bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    Static(&'static [u8]),
    Owned(Vec<u8>),
}

impl Chunk {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Static(b) => b,
            Chunk::Owned(b) => b,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Queued bytes would pass the bound: the client is not reading.
    Full { queued: usize, limit: usize },
    /// The writer is gone (the connection is closing).
    Closed,
}

/// What a client's queue needs.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub id: ClientId,
    /// `CTI_CLIENT_QUEUE_BYTES`.
    pub limit: usize,
    /// `CTI_CLIENT_WRITE_TIMEOUT`.
    pub write_timeout: Duration,
    pub counters: Arc<Counters>,
}

#[cfg(unix)]
mod direct;
#[cfg(unix)]
pub use direct::{start, start_flusher, Finisher, OutQueue};

#[cfg(not(unix))]
mod threaded;
#[cfg(not(unix))]
pub use threaded::{start, start_flusher, Finisher, OutQueue};

/// The socket type both implementations send on.
pub type Sock = Arc<TcpStream>;
