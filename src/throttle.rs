//! Login throttling: password guessing drops to a few attempts per minute, without locking out an
//! agent who types the right password from a clean address.
//!
//! Pure core (time passed in), shared by the `client-N` threads behind a mutex ([`Throttle`]).
//! Rules, with `max_user` = `CTI_LOGIN_MAX_FAILURES`, `max_ip` = `CTI_LOGIN_MAX_FAILURES_PER_IP`,
//! `window` = `CTI_LOGIN_WINDOW`, `cooldown` = `CTI_LOGIN_COOLDOWN`:
//! - an **address** with `max_ip` failed logins (any user) within `window` is blocked for `cooldown`,
//!   doubling at every new block up to [`MAX_COOLDOWN`]: its logins are answered `101 KO` without a
//!   database lookup;
//! - a **user** with `max_user` failed logins (from any address) within `window` is guarded for
//!   `cooldown` (doubling likewise): while guarded, a login for that user from an address that has
//!   already failed for it is refused without a lookup; a login from any other address is still
//!   checked, so the agent at a clean desk logs in; if it fails, that address is added.
//!
//! A success clears the user's and the address's record. Memory is bounded: at most [`MAX_KEYS`]
//! records, the stalest dropped first.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The longest cool-down a repeat offender gets.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(3600);
/// Records kept at most (addresses plus users).
pub const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_user: u32,
    pub max_ip: u32,
    pub window: Duration,
    pub cooldown: Duration,
}

#[derive(Debug, Default)]
struct Record {
    failures: VecDeque<Instant>,
    blocked_until: Option<Instant>,
    /// Blocks so far (the cool-down doubles with each).
    strikes: u32,
    last: Option<Instant>,
    /// For users: the addresses that failed for this user.
    from: HashSet<IpAddr>,
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

/// Why a login is refused before any lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Address { until: Duration },
    User { until: Duration },
}

#[derive(Debug)]
pub struct LoginThrottle {
    limits: Limits,
    ips: HashMap<IpAddr, Record>,
    users: HashMap<String, Record>,
}

impl LoginThrottle {
    pub fn new(limits: Limits) -> Self {
        LoginThrottle {
            limits,
            ips: HashMap::new(),
            users: HashMap::new(),
        }
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// May `user` try to log in from `ip` now (a database lookup)?
    pub fn check(&self, ip: IpAddr, user: &str, now: Instant) -> Result<(), Refusal> {
        if let Some(r) = self.ips.get(&ip).filter(|r| r.blocked(now)) {
            let until = r.blocked_until.unwrap_or(now).duration_since(now);
            return Err(Refusal::Address { until });
        }
        if let Some(r) = self
            .users
            .get(&user.to_ascii_lowercase())
            .filter(|r| r.blocked(now) && r.from.contains(&ip))
        {
            let until = r.blocked_until.unwrap_or(now).duration_since(now);
            return Err(Refusal::User { until });
        }
        Ok(())
    }

    /// A lookup said the credentials are wrong.
    pub fn failed(&mut self, ip: IpAddr, user: &str, now: Instant) {
        let l = self.limits;
        self.ips.entry(ip).or_default().fail(now, &l, l.max_ip);
        let u = self.users.entry(user.to_ascii_lowercase()).or_default();
        u.from.insert(ip);
        u.fail(now, &l, l.max_user);
        if self.len() > 10_000 {
            self.purge(now);
        }
        self.bound();
    }

    /// A login succeeded: the address and the user start clean.
    pub fn succeeded(&mut self, ip: IpAddr, user: &str) {
        self.ips.remove(&ip);
        self.users.remove(&user.to_ascii_lowercase());
    }

    /// Forgets records with nothing left to remember (called from time to time).
    pub fn purge(&mut self, now: Instant) {
        let l = self.limits;
        let stale =
            |r: &Record| !r.blocked(now) && r.last.is_none_or(|t| now.duration_since(t) > l.window);
        self.ips.retain(|_, r| !stale(r));
        self.users.retain(|_, r| !stale(r));
    }

    fn bound(&mut self) {
        while self.ips.len() + self.users.len() > MAX_KEYS {
            let oldest_ip = self.ips.iter().min_by_key(|(_, r)| r.last).map(|(k, _)| *k);
            let oldest_user = self
                .users
                .iter()
                .min_by_key(|(_, r)| r.last)
                .map(|(k, _)| k.clone());
            match (oldest_ip, oldest_user) {
                (Some(ip), _) if self.ips.len() >= self.users.len() => {
                    self.ips.remove(&ip);
                }
                (_, Some(u)) => {
                    self.users.remove(&u);
                }
                (Some(ip), None) => {
                    self.ips.remove(&ip);
                }
                (None, None) => return,
            }
        }
    }

    pub fn len(&self) -> usize {
        self.ips.len() + self.users.len()
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

    fn limits() -> Limits {
        Limits {
            max_user: 3,
            max_ip: 5,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_guessed_user_is_refused_from_the_guessing_address_but_not_from_a_clean_one() {
        let mut t = LoginThrottle::new(limits());
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(t.check(A, "alice", t0).is_ok(), "attempt {i} is checked");
            t.failed(A, "alice", t0);
        }
        assert!(matches!(t.check(A, "Alice", t0), Err(Refusal::User { .. })));
        assert!(t.check(B, "alice", t0).is_ok(), "the agent at a clean desk");
        t.succeeded(B, "alice");
        assert!(t.check(A, "alice", t0).is_ok(), "a success clears the user");
    }

    #[test]
    fn an_address_is_blocked_for_all_users_and_the_cooldown_doubles() {
        let mut t = LoginThrottle::new(limits());
        let t0 = Instant::now();
        for i in 0..5 {
            t.failed(A, &format!("u{i}"), t0);
        }
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
