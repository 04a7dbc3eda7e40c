//! ORIG's rate per agent: every `Originate` is a real call from the agent's phone, so a client (or
//! whoever holds an agent's password) cannot put hundreds on the PBX in a second.
//!
//! A token bucket per user name, shared by every connection of that agent: `burst` dials at once,
//! then `per_minute` a minute. Pure core (time passed in), behind a mutex for the `client-N`
//! threads ([`DialRate`]). Memory is bounded: a bucket that has filled up again is the same as no
//! bucket and is dropped when there are more than [`MAX_BUCKETS`]; only logged-in agents (names
//! the database knows) ever get one.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// Buckets kept before the full ones are dropped.
pub const MAX_BUCKETS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DialLimits {
    /// `CTI_ORIGINATE_PER_MINUTE`: the sustained rate.
    pub per_minute: u32,
    /// `CTI_ORIGINATE_BURST`: dials allowed at once after a pause.
    pub burst: u32,
}

impl Default for DialLimits {
    fn default() -> Self {
        DialLimits {
            per_minute: 60,
            burst: 5,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default)]
pub struct DialBuckets {
    buckets: HashMap<String, Bucket>,
}

impl DialBuckets {
    /// Takes one dial from `user`'s bucket if there is one to take.
    pub fn allow(&mut self, user: &str, limits: DialLimits, now: Instant) -> bool {
        let burst = f64::from(limits.burst.max(1));
        let rate = f64::from(limits.per_minute.max(1)) / 60.0;
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(user) {
            self.buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
            // Still full of agents who all dialled within a few seconds: the stalest goes.
            if self.buckets.len() >= MAX_BUCKETS {
                let stalest = self
                    .buckets
                    .iter()
                    .min_by_key(|(_, b)| b.at)
                    .map(|(k, _)| k.clone());
                if let Some(k) = stalest {
                    self.buckets.remove(&k);
                }
            }
        }
        let b = self.buckets.entry(user.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// The buckets shared by the client threads.
#[derive(Debug, Default)]
pub struct DialRate(Mutex<DialBuckets>);

impl DialRate {
    pub fn allow(&self, user: &str, limits: DialLimits, now: Instant) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(user, limits, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LIMITS: DialLimits = DialLimits {
        per_minute: 60,
        burst: 5,
    };

    #[test]
    fn a_burst_then_the_rate() {
        let mut d = DialBuckets::default();
        let t0 = Instant::now();
        let allowed = (0..5000).filter(|_| d.allow("alice", LIMITS, t0)).count();
        assert_eq!(allowed, 5, "one write of 5,000 ORIGs: the burst only");
        // One a second afterwards (60 a minute).
        assert!(!d.allow("alice", LIMITS, t0 + Duration::from_millis(900)));
        assert!(d.allow("alice", LIMITS, t0 + Duration::from_millis(1900)));
        assert!(!d.allow("alice", LIMITS, t0 + Duration::from_millis(2000)));
        // A minute of trying every 10 ms: about 60 more.
        let mut n = 0;
        for i in 0..6000u64 {
            if d.allow("alice", LIMITS, t0 + Duration::from_millis(2000 + 10 * i)) {
                n += 1;
            }
        }
        assert!((59..=61).contains(&n), "{n}");
        // Another agent has a bucket of its own.
        assert!(d.allow("bob", LIMITS, t0 + Duration::from_millis(2000)));
    }

    #[test]
    fn a_pause_refills_up_to_the_burst_only() {
        let mut d = DialBuckets::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(d.allow("alice", LIMITS, t0));
        }
        let later = t0 + Duration::from_secs(3600);
        let allowed = (0..100).filter(|_| d.allow("alice", LIMITS, later)).count();
        assert_eq!(allowed, 5);
    }

    #[test]
    fn buckets_are_bounded() {
        let mut d = DialBuckets::default();
        let t0 = Instant::now();
        for i in 0..MAX_BUCKETS * 3 {
            d.allow(
                &format!("agent{i}"),
                LIMITS,
                t0 + Duration::from_secs(i as u64),
            );
            assert!(d.len() <= MAX_BUCKETS, "{}", d.len());
        }
        // A bucket still short of dials is kept over full ones, and over staler ones: its agent
        // cannot dodge the rate by others' dials.
        let mut d = DialBuckets::default();
        for i in 0..MAX_BUCKETS {
            d.allow(&format!("agent{i}"), LIMITS, t0);
        }
        let t1 = t0 + Duration::from_millis(1);
        for _ in 0..5 {
            d.allow("busy", LIMITS, t1);
        }
        for i in 0..10 {
            d.allow(&format!("late{i}"), LIMITS, t1);
        }
        assert!(d.len() <= MAX_BUCKETS);
        assert!(!d.allow("busy", LIMITS, t1));
    }
}
