//! Who may hold a connection: `CTI_MAX_CLIENTS` connections in all, at most `CTI_MAX_PENDING` of them
//! not logged in yet, at most `CTI_MAX_PENDING_PER_IP` of those from one source address.
//!
//! Pure core ([`Admission`], generic over the handle it returns for closing) plus a thin shared
//! wrapper ([`Slots`]) used by the `listener` (admit) and the `client-N` threads (logged in, gone).
//!
//! Rule: a flood of junk can delay a real login by at most one retry and never touches logged-in
//! agents. When a pending limit is reached, the **oldest** pending connection (of that address, or
//! of all) is closed to admit the new one; when every one of the `CTI_MAX_CLIENTS` slots is taken,
//! the oldest pending connection makes room, and only when all are logged in is the new one refused.
//! A closed ("evicted") connection keeps its thread until that notices the closed socket, so the
//! number of live connections is also capped, at `max_clients + max_pending` — which is what the
//! descriptor budget is sized for.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};

use crate::registry::ClientId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_clients: usize,
    pub max_pending: usize,
    pub max_pending_per_ip: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decision<H> {
    /// Admitted; these older pending connections must be closed for it.
    Admit { evict: Vec<H> },
    /// Every slot is held by a logged-in agent (or by connections still closing).
    Refuse,
}

#[derive(Debug)]
pub struct Admission<H> {
    limits: Limits,
    /// Pending connections, oldest first (ids grow with accept order).
    pending: BTreeMap<ClientId, (IpAddr, H)>,
    per_ip: HashMap<IpAddr, usize>,
    /// Connections whose thread is alive (pending, logged in, or evicted and closing).
    live: usize,
    /// Evicted, still closing.
    evicted: HashSet<ClientId>,
    logged_in: HashSet<ClientId>,
}

impl<H> Admission<H> {
    pub fn new(limits: Limits) -> Self {
        Admission {
            limits,
            pending: BTreeMap::new(),
            per_ip: HashMap::new(),
            live: 0,
            evicted: HashSet::new(),
            logged_in: HashSet::new(),
        }
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Connections counted against `CTI_MAX_CLIENTS` (live minus those closing).
    pub fn active(&self) -> usize {
        self.live - self.evicted.len()
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn take_pending(&mut self, id: ClientId) -> Option<H> {
        let (ip, h) = self.pending.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        Some(h)
    }

    fn evict(&mut self, id: ClientId, out: &mut Vec<H>) {
        if let Some(h) = self.take_pending(id) {
            self.evicted.insert(id);
            out.push(h);
        }
    }

    fn oldest_from(&self, ip: IpAddr) -> Option<ClientId> {
        self.pending
            .iter()
            .find(|(_, (a, _))| *a == ip)
            .map(|(id, _)| *id)
    }

    /// A new connection `id` from `ip` (ids must grow with accept order).
    pub fn admit(&mut self, id: ClientId, ip: IpAddr, handle: H) -> Decision<H> {
        let l = self.limits;
        if self.live >= l.max_clients + l.max_pending {
            return Decision::Refuse;
        }
        let mut evict = Vec::new();
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= l.max_pending_per_ip {
            if let Some(old) = self.oldest_from(ip) {
                self.evict(old, &mut evict);
            }
        }
        if self.pending.len() >= l.max_pending || self.active() >= l.max_clients {
            match self.pending.keys().next().copied() {
                Some(old) => self.evict(old, &mut evict),
                None => return Decision::Refuse,
            }
        }
        if self.active() >= l.max_clients {
            // Still full: the slots are held by agents. Nothing was evicted for nothing.
            return Decision::Refuse;
        }
        self.live += 1;
        self.pending.insert(id, (ip, handle));
        *self.per_ip.entry(ip).or_insert(0) += 1;
        Decision::Admit { evict }
    }

    /// `id` logged in: it no longer counts as pending (and can no longer be evicted).
    pub fn logged_in(&mut self, id: ClientId) {
        if self.take_pending(id).is_some() {
            self.logged_in.insert(id);
        }
    }

    /// Every connection that has not logged in, to be closed (the server is stopping): they count
    /// as evicted until their threads end.
    pub fn take_all_pending(&mut self) -> Vec<H> {
        let ids: Vec<ClientId> = self.pending.keys().copied().collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            self.evict(id, &mut out);
        }
        out
    }

    /// `id`'s thread ended: its slot is free. False (and nothing changes) if `id` holds none.
    pub fn release(&mut self, id: ClientId) -> bool {
        let held = self.take_pending(id).is_some()
            || self.evicted.remove(&id)
            || self.logged_in.remove(&id);
        if held {
            self.live -= 1;
        }
        held
    }
}

/// The shared admission state: `listener` admits, `client-N` threads report login and exit.
#[derive(Debug)]
pub struct Slots {
    inner: Mutex<Admission<Arc<TcpStream>>>,
}

impl Slots {
    pub fn new(limits: Limits) -> Self {
        Slots {
            inner: Mutex::new(Admission::new(limits)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Admission<Arc<TcpStream>>> {
        // A panic while holding this lock leaves consistent counts (every step is one statement).
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_limits(&self, limits: Limits) {
        self.lock().set_limits(limits);
    }

    /// Admits `id`; the evicted connections are shut down here. None = refused.
    pub fn admit(&self, id: ClientId, ip: IpAddr, sock: Arc<TcpStream>) -> Option<usize> {
        let decision = self.lock().admit(id, ip, sock);
        match decision {
            Decision::Admit { evict } => {
                for s in &evict {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
                Some(evict.len())
            }
            Decision::Refuse => None,
        }
    }

    pub fn logged_in(&self, id: ClientId) {
        self.lock().logged_in(id);
    }

    /// The connection's thread is ending; safe to call more than once.
    pub fn release(&self, id: ClientId) {
        self.lock().release(id);
    }

    /// Shuts down every connection that has not logged in (the server is stopping: a connection
    /// that was accepted as the dispatcher closed the others would otherwise wait for its login
    /// timeout). How many.
    pub fn close_pending(&self) -> usize {
        let socks = self.lock().take_all_pending();
        for s in &socks {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        socks.len()
    }

    /// (active connections, pending connections).
    pub fn counts(&self) -> (usize, usize) {
        let g = self.lock();
        (g.active(), g.pending())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    fn adm(max_clients: usize, max_pending: usize, per_ip: usize) -> Admission<u64> {
        Admission::new(Limits {
            max_clients,
            max_pending,
            max_pending_per_ip: per_ip,
        })
    }

    #[test]
    fn the_oldest_pending_makes_room_at_the_pending_bound() {
        let mut a = adm(100, 3, 100);
        for id in 1..=3 {
            assert_eq!(a.admit(id, A, id), Decision::Admit { evict: vec![] });
        }
        assert_eq!(a.admit(4, A, 4), Decision::Admit { evict: vec![1] });
        assert_eq!(a.pending(), 3);
        assert_eq!(a.active(), 3, "the evicted one no longer counts");
        // The evicted thread ends later; its release frees its live slot.
        assert!(a.release(1));
        assert_eq!(a.active(), 3);
    }

    #[test]
    fn stopping_takes_every_pending_connection_and_no_agent() {
        let mut a = adm(100, 100, 100);
        for id in 1..=4 {
            a.admit(id, A, id);
        }
        a.logged_in(2);
        let mut taken = a.take_all_pending();
        taken.sort_unstable();
        assert_eq!(
            taken,
            vec![1, 3, 4],
            "the agent (2) is the dispatcher's to close"
        );
        assert_eq!(a.pending(), 0);
        assert!(a.take_all_pending().is_empty());
        for id in 1..=4 {
            assert!(a.release(id), "{id}: its thread's end frees its slot");
        }
        assert_eq!(a.active(), 0);
    }

    #[test]
    fn the_per_address_bound_evicts_that_address_only() {
        let mut a = adm(100, 100, 2);
        a.admit(1, B, 1);
        a.admit(2, A, 2);
        a.admit(3, B, 3);
        assert_eq!(a.admit(4, B, 4), Decision::Admit { evict: vec![1] });
        assert_eq!(a.admit(5, A, 5), Decision::Admit { evict: vec![] });
        assert_eq!(a.admit(6, A, 6), Decision::Admit { evict: vec![2] });
    }

    #[test]
    fn logged_in_agents_are_never_evicted_and_a_full_house_refuses() {
        let mut a = adm(2, 10, 10);
        a.admit(1, A, 1);
        a.admit(2, A, 2);
        a.logged_in(1);
        // Full: the pending one (2) makes room for 3.
        assert_eq!(a.admit(3, A, 3), Decision::Admit { evict: vec![2] });
        a.logged_in(3);
        assert_eq!(a.admit(4, A, 4), Decision::Refuse, "every slot is an agent");
        assert!(a.release(3));
        assert!(!a.release(3), "released once");
        assert_eq!(a.admit(5, A, 5), Decision::Admit { evict: vec![] });
    }

    #[test]
    fn live_connections_are_capped_while_evicted_ones_close() {
        let mut a = adm(1, 1, 1);
        a.admit(1, A, 1);
        assert_eq!(a.admit(2, A, 2), Decision::Admit { evict: vec![1] });
        // 1 is still closing: live = 2 = max_clients + max_pending.
        assert_eq!(a.admit(3, A, 3), Decision::Refuse);
        a.release(1);
        assert_eq!(a.admit(3, A, 3), Decision::Admit { evict: vec![2] });
    }

    #[test]
    fn slots_release_once() {
        let s = Slots::new(Limits {
            max_clients: 1,
            max_pending: 1,
            max_pending_per_ip: 1,
        });
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert_eq!(s.admit(1, A, Arc::new(c)), Some(0));
        s.logged_in(1);
        s.release(1);
        s.release(1);
        assert_eq!(s.counts(), (0, 0));
    }
}
