//! Login throttling: password guessing drops to a few attempts per minute, from one address or from
//! many, without locking out an agent who types the right password where they logged in before.
//!
//! Pure core (time passed in), shared by the `client-N` threads behind a mutex ([`Throttle`]).
//! Rules, with `max_user` = `CTI_LOGIN_MAX_FAILURES`, `max_ip` = `CTI_LOGIN_MAX_FAILURES_PER_IP`,
//! `window` = `CTI_LOGIN_WINDOW`, `cooldown` = `CTI_LOGIN_COOLDOWN`:
//! - addresses count by **network**: an IPv4 address by its `/v4_prefix` (`CTI_LOGIN_IPV4_PREFIX`,
//!   24), an IPv6 one by its `/v6_prefix` (`CTI_LOGIN_IPV6_PREFIX`, 64) — a host holds a whole
//!   IPv6 /64, and a new source address per connection must not be a new start;
//! - a **network** with `max_ip` failed logins (any user) within `window` is blocked for `cooldown`,
//!   doubling at every new block up to [`MAX_COOLDOWN`]: its logins are answered `101 KO` without a
//!   database lookup;
//! - a **user** with `max_user` failed logins (from any network) within `window` is guarded for
//!   `cooldown` (doubling likewise): while guarded, its logins are refused without a lookup from
//!   every network but those it has logged in from before (the agent's own desk: at most
//!   [`GOOD_NETS`] per user, kept [`GOOD_FOR`]).
//!
//! A success clears the user's and the network's record. Memory is bounded in count and bytes: at
//! most [`MAX_KEYS`] records, the stalest dropped first; users are kept by a keyed 64-bit hash of
//! their lower-cased name (never the name: a 4,000-character user name costs 8 bytes).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The longest cool-down a repeat offender gets.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(3600);
/// Records kept at most (networks, users, and users' known networks together).
pub const MAX_KEYS: usize = 100_000;
/// Networks remembered per user as ones it logged in from.
pub const GOOD_NETS: usize = 8;
/// How long a network a user logged in from stays known.
pub const GOOD_FOR: Duration = Duration::from_secs(30 * 86_400);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_user: u32,
    pub max_ip: u32,
    pub window: Duration,
    pub cooldown: Duration,
    /// `CTI_LOGIN_IPV4_PREFIX`: IPv4 addresses count by this network.
    pub v4_prefix: u8,
    /// `CTI_LOGIN_IPV6_PREFIX`: IPv6 addresses count by this network.
    pub v6_prefix: u8,
}

impl Limits {
    /// The network `ip` counts under (an IPv4-mapped IPv6 address as IPv4).
    pub fn network(&self, ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let keep = u32::from(self.v4_prefix.min(32));
                let mask = u32::MAX.checked_shl(32 - keep).unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let keep = u32::from(self.v6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - keep).unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }
}

#[derive(Debug, Default)]
struct Record {
    failures: VecDeque<Instant>,
    blocked_until: Option<Instant>,
    /// Blocks so far (the cool-down doubles with each).
    strikes: u32,
    last: Option<Instant>,
}

impl Record {
    fn fail(&mut self, now: Instant, l: &Limits, max: u32) {
        self.last = Some(now);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > l.window)
        {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if self.failures.len() as u32 >= max && !self.blocked(now) {
            let cooldown = l
                .cooldown
                .saturating_mul(1u32 << self.strikes.min(16))
                .min(MAX_COOLDOWN);
            self.blocked_until = Some(now + cooldown);
            self.strikes += 1;
            self.failures.clear();
        }
    }

    fn blocked(&self, now: Instant) -> bool {
        self.blocked_until.is_some_and(|t| now < t)
    }
}

/// The networks a user logged in from, most recent last.
#[derive(Debug, Default)]
struct Known {
    nets: Vec<IpAddr>,
    last: Option<Instant>,
}

/// Why a login is refused before any lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Address { until: Duration },
    User { until: Duration },
}

#[derive(Debug)]
pub struct LoginThrottle {
    limits: Limits,
    nets: HashMap<IpAddr, Record>,
    users: HashMap<u64, Record>,
    known: HashMap<u64, Known>,
    /// Keys the users' hashes (random per process: nobody can aim a name at another's record).
    hasher: RandomState,
    /// When [`LoginThrottle::purge`] last ran from a failure.
    purged: Option<Instant>,
}

/// Removes the `n` entries of `map` with the oldest `last` (None counts as oldest).
fn evict_stalest<K: Copy + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    n: usize,
    last: impl Fn(&V) -> Option<Instant>,
) {
    let n = n.min(map.len());
    if n == 0 {
        return;
    }
    let mut ages: Vec<(Option<Instant>, K)> = map.iter().map(|(k, v)| (last(v), *k)).collect();
    ages.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
    for (_, k) in &ages[..n] {
        map.remove(k);
    }
}

impl LoginThrottle {
    pub fn new(limits: Limits) -> Self {
        LoginThrottle {
            limits,
            nets: HashMap::new(),
            users: HashMap::new(),
            known: HashMap::new(),
            hasher: RandomState::new(),
            purged: None,
        }
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    fn user(&self, name: &str) -> u64 {
        self.hasher.hash_one(name.to_ascii_lowercase())
    }

    /// May `user` try to log in from `ip` now (a database lookup)?
    pub fn check(&self, ip: IpAddr, user: &str, now: Instant) -> Result<(), Refusal> {
        let net = self.limits.network(ip);
        if let Some(r) = self.nets.get(&net).filter(|r| r.blocked(now)) {
            let until = r.blocked_until.unwrap_or(now).duration_since(now);
            return Err(Refusal::Address { until });
        }
        let u = self.user(user);
        let known_here = self.known.get(&u).is_some_and(|k| k.nets.contains(&net));
        if let Some(r) = self.users.get(&u).filter(|r| r.blocked(now) && !known_here) {
            let until = r.blocked_until.unwrap_or(now).duration_since(now);
            return Err(Refusal::User { until });
        }
        Ok(())
    }

    /// A lookup said the credentials are wrong.
    pub fn failed(&mut self, ip: IpAddr, user: &str, now: Instant) {
        let l = self.limits;
        let net = l.network(ip);
        self.nets.entry(net).or_default().fail(now, &l, l.max_ip);
        let u = self.user(user);
        self.users.entry(u).or_default().fail(now, &l, l.max_user);
        // Many records: the stale ones go, at most once a second (a scan of them all).
        if self.len() > 10_000
            && self
                .purged
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.purged = Some(now);
            self.purge(now);
        }
        self.bound();
    }

    /// A login succeeded: the network and the user start clean, and the user's network is known.
    pub fn succeeded(&mut self, ip: IpAddr, user: &str, now: Instant) {
        let net = self.limits.network(ip);
        self.nets.remove(&net);
        let u = self.user(user);
        self.users.remove(&u);
        let k = self.known.entry(u).or_default();
        k.nets.retain(|n| *n != net);
        k.nets.push(net);
        if k.nets.len() > GOOD_NETS {
            k.nets.remove(0);
        }
        k.last = Some(now);
        self.bound();
    }

    /// Forgets records with nothing left to remember (called from time to time).
    pub fn purge(&mut self, now: Instant) {
        let l = self.limits;
        let stale =
            |r: &Record| !r.blocked(now) && r.last.is_none_or(|t| now.duration_since(t) > l.window);
        self.nets.retain(|_, r| !stale(r));
        self.users.retain(|_, r| !stale(r));
        self.known
            .retain(|_, k| k.last.is_some_and(|t| now.duration_since(t) <= GOOD_FOR));
    }

    /// At most [`MAX_KEYS`] records: the stalest of the largest kind go first, a hundredth of
    /// the bound at a time (one sort per hundredth under a flood, not one scan per failure).
    fn bound(&mut self) {
        while self.len() > MAX_KEYS {
            let n = (self.len() - MAX_KEYS).max(MAX_KEYS / 100);
            let (a, b, c) = (self.nets.len(), self.users.len(), self.known.len());
            if a >= b && a >= c {
                evict_stalest(&mut self.nets, n, |r| r.last);
            } else if b >= c {
                evict_stalest(&mut self.users, n, |r| r.last);
            } else {
                evict_stalest(&mut self.known, n, |k| k.last);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.nets.len() + self.users.len() + self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The shared throttle of the client threads.
#[derive(Debug)]
pub struct Throttle(Mutex<LoginThrottle>);

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        Throttle(Mutex::new(LoginThrottle::new(limits)))
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut LoginThrottle) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    const C: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 7, 1));

    fn limits() -> Limits {
        Limits {
            max_user: 3,
            max_ip: 5,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(60),
            v4_prefix: 24,
            v6_prefix: 64,
        }
    }

    #[test]
    fn a_guessed_user_is_refused_everywhere_but_where_it_logged_in_before() {
        let mut t = LoginThrottle::new(limits());
        let t0 = Instant::now();
        // The agent logged in from C's network yesterday.
        t.succeeded(C, "alice", t0);
        for i in 0..3 {
            assert!(t.check(A, "alice", t0).is_ok(), "attempt {i} is checked");
            t.failed(A, "alice", t0);
        }
        assert!(matches!(t.check(A, "Alice", t0), Err(Refusal::User { .. })));
        assert!(
            matches!(t.check(B, "alice", t0), Err(Refusal::User { .. })),
            "a new address is no new start"
        );
        let other_host_same_net = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 7, 200));
        assert!(
            t.check(other_host_same_net, "alice", t0).is_ok(),
            "the agent's own network"
        );
        t.succeeded(C, "alice", t0);
        assert!(t.check(A, "alice", t0).is_ok(), "a success clears the user");
    }

    /// A new source address per guess (issue 22: 5,645 real checks in 20 s from rotating
    /// 127.x addresses): no more lookups than `max_user` per window, whatever the rotation.
    #[test]
    fn rotating_addresses_get_max_user_lookups_and_no_more() {
        let mut t = LoginThrottle::new(limits());
        let t0 = Instant::now();
        let mut lookups = 0;
        for i in 0..20_000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x7f00_0000 | i));
            let now = t0 + Duration::from_millis(u64::from(i));
            if t.check(ip, "alice", now).is_ok() {
                lookups += 1;
                t.failed(ip, "alice", now);
            }
        }
        // 20 s, cool-downs of 60 s then doubling: the first 3, then none.
        assert_eq!(lookups, 3);
        // IPv6: a whole /64 is one network.
        let mut t = LoginThrottle::new(limits());
        for i in 0..100u128 {
            let ip = IpAddr::V6((0x2001_0db8_0000_0001_0000_0000_0000_0000u128 | i).into());
            t.failed(ip, &format!("user{i}"), t0);
        }
        let same_64 = IpAddr::V6(0x2001_0db8_0000_0001_ffff_0000_0000_0001u128.into());
        assert!(matches!(
            t.check(same_64, "bob", t0),
            Err(Refusal::Address { .. })
        ));
        let next_64 = IpAddr::V6(0x2001_0db8_0000_0002_0000_0000_0000_0001u128.into());
        assert!(t.check(next_64, "bob", t0).is_ok());
    }

    /// Long user names cost a hash each, not their bytes; the records stay bounded in count.
    #[test]
    fn records_are_bounded_in_count_and_bytes() {
        let mut t = LoginThrottle::new(limits());
        let t0 = Instant::now();
        let long = "x".repeat(4000);
        for i in 0..(MAX_KEYS as u32 + 5000) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(i << 8));
            t.failed(ip, &format!("{long}{i}"), t0);
            assert!(t.len() <= MAX_KEYS);
        }
    }

    #[test]
    fn an_address_is_blocked_for_all_users_and_the_cooldown_doubles() {
        let mut t = LoginThrottle::new(limits());
        let t0 = Instant::now();
        for i in 0..5 {
            t.failed(A, &format!("u{i}"), t0);
        }
        assert!(
            matches!(t.check(B, "zed", t0), Err(Refusal::Address { .. })),
            "B is in A's /24"
        );
        assert_eq!(
            t.check(A, "zed", t0),
            Err(Refusal::Address {
                until: Duration::from_secs(60)
            })
        );
        let t1 = t0 + Duration::from_secs(61);
        assert!(t.check(A, "zed", t1).is_ok(), "the cool-down is over");
        for i in 0..5 {
            t.failed(A, &format!("v{i}"), t1);
        }
        assert_eq!(
            t.check(A, "zed", t1),
            Err(Refusal::Address {
                until: Duration::from_secs(120)
            }),
            "doubled"
        );
    }

    #[test]
    fn failures_outside_the_window_do_not_count_and_stale_records_go() {
        let mut t = LoginThrottle::new(limits());
        let t0 = Instant::now();
        t.failed(A, "alice", t0);
        t.failed(A, "alice", t0 + Duration::from_secs(30));
        t.failed(A, "alice", t0 + Duration::from_secs(100));
        assert!(t.check(A, "alice", t0 + Duration::from_secs(100)).is_ok());
        t.purge(t0 + Duration::from_secs(300));
        assert!(t.is_empty());
    }
}
