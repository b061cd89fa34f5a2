//! Token buckets, per client address and per user, in front of the endpoints that cost a WeChat
//! call or a database write: `/api/wxuser`, `/api/token/refresh` and `/api/phone`.
//!
//! [`Limiter`] is the general piece (any key, any rate: issue 13's "uploads per user, 20 an hour"
//! is `Limiter::new(20, 20.0 / 3600.0)`); [`RateLimits`] is the service's use of it.
//!
//! Logins are limited per client address only: before WeChat answers, nobody knows who the user
//! is. Refreshes and phone binds are limited per client address and per user (the session's uid;
//! on refresh, the rotations, since a repeat within the reuse grace only reads what one wrote).
//! Every count lives in this process: a cluster of `n` nodes lets through up to `n` times the
//! limit, as nginx's `limit_req` does.
//!
//! This runs on every login, from up to 1,024 connections at once, so the buckets are split into
//! shards by key hash, each behind its own mutex, and a check is a hash, a lock and a few float
//! operations. Memory is bounded: each shard holds at most its share of [`MAX_KEYS`]; a full shard
//! first forgets buckets that have refilled (a full bucket and no bucket are the same), then the
//! one touched longest ago (which at worst hands that key a fresh burst).

use crate::metrics::Metrics;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Shards per limiter: far more than the cores, so concurrent requests rarely wait on one lock.
const SHARDS: usize = 64;
/// Keys one limiter remembers at most (a bucket is under 100 bytes: a few MiB at worst).
pub const MAX_KEYS: usize = 65_536;

/// A refused request: how long until the key has a token again, in whole seconds (at least 1),
/// as `Retry-After` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(u64);

impl RetryAfter {
    /// Whole seconds to wait, at least 1.
    pub fn seconds(self) -> u64 {
        self.0
    }
}

/// One key's bucket: the tokens it had at `updated`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets keyed by `K`: each key may spend `burst` requests at once and gets
/// `per_second` back per second, up to `burst`.
pub struct Limiter<K> {
    burst: f64,
    per_second: f64,
    max_keys_per_shard: usize,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<K, Bucket>>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// A limiter allowing `burst` requests at once per key, refilled at `per_second` (which may
    /// be a fraction: `1.0 / 60.0` is one a minute).
    ///
    /// # Panics
    /// If `burst` is 0 or `per_second` is not a positive finite number: a limiter that refuses
    /// everything is a configuration mistake (turn limiting off by not having a limiter).
    pub fn new(burst: u32, per_second: f64) -> Limiter<K> {
        Limiter::with_max_keys(burst, per_second, MAX_KEYS)
    }

    fn with_max_keys(burst: u32, per_second: f64, max_keys: usize) -> Limiter<K> {
        assert!(burst > 0, "a limiter needs a burst of at least 1");
        assert!(
            per_second.is_finite() && per_second > 0.0,
            "a limiter needs a positive rate"
        );
        Limiter {
            burst: f64::from(burst),
            per_second,
            max_keys_per_shard: max_keys.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Takes a token from `key`'s bucket, or says how long until there is one.
    pub fn check(&self, key: &K) -> Result<(), RetryAfter> {
        self.check_at(key, Instant::now())
    }

    /// [`Limiter::check`] at a given time, so tests drive the clock instead of sleeping.
    fn check_at(&self, key: &K, now: Instant) -> Result<(), RetryAfter> {
        let mut shard = self.shard(key);
        let tokens = match shard.get(key) {
            Some(bucket) => self.refilled(bucket, now),
            None => {
                if shard.len() >= self.max_keys_per_shard {
                    self.make_room(&mut shard, now);
                }
                self.burst
            }
        };
        if tokens >= 1.0 {
            shard.insert(
                key.clone(),
                Bucket {
                    tokens: tokens - 1.0,
                    updated: now,
                },
            );
            Ok(())
        } else {
            // Nothing is spent, and the bucket keeps its last update, so refusals cost no tokens.
            let wait = ((1.0 - tokens) / self.per_second).ceil();
            Err(RetryAfter((wait as u64).max(1)))
        }
    }

    /// The tokens `bucket` holds at `now`.
    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }

    /// Frees a place in a full shard: buckets that have refilled go first (forgetting them
    /// changes nothing), else the one touched longest ago.
    fn make_room(&self, shard: &mut HashMap<K, Bucket>, now: Instant) {
        shard.retain(|_, bucket| self.refilled(bucket, now) < self.burst);
        if shard.len() >= self.max_keys_per_shard {
            let oldest = shard
                .iter()
                .min_by_key(|(_, bucket)| bucket.updated)
                .map(|(key, _)| key.clone());
            if let Some(key) = oldest {
                shard.remove(&key);
            }
        }
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, HashMap<K, Bucket>> {
        let index = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        // A bucket is written whole: a panic elsewhere cannot leave one half-written.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Buckets held, for the memory bound's test.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
    }
}

/// A limit's settings: `burst` at once, `per_second` back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub burst: u32,
    pub per_second: f64,
}

/// Who a refusal limited, as the metric's `scope` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Client,
    User,
}

impl Scope {
    fn label(self) -> &'static str {
        match self {
            Scope::Client => "client",
            Scope::User => "user",
        }
    }
}

/// The service's limits: per client address and route, and per user and route. Either is off
/// when its rate is `None`.
pub struct RateLimits {
    per_client: Option<Limiter<(&'static str, IpAddr)>>,
    per_user: Option<Limiter<(&'static str, String)>>,
    metrics: Arc<Metrics>,
}

impl RateLimits {
    pub fn new(client: Option<Rate>, user: Option<Rate>, metrics: Arc<Metrics>) -> RateLimits {
        RateLimits {
            per_client: client.map(|r| Limiter::new(r.burst, r.per_second)),
            per_user: user.map(|r| Limiter::new(r.burst, r.per_second)),
            metrics,
        }
    }

    /// Admits a request to `route` from `ip` (each route has its own bucket per address).
    pub fn client(&self, route: &'static str, ip: IpAddr) -> Result<(), RetryAfter> {
        let Some(limiter) = &self.per_client else {
            return Ok(());
        };
        self.counted(
            route,
            Scope::Client,
            limiter.check(&(route, client_key(ip))),
        )
    }

    /// Admits a request to `route` by the user `uid`.
    pub fn user(&self, route: &'static str, uid: &str) -> Result<(), RetryAfter> {
        let Some(limiter) = &self.per_user else {
            return Ok(());
        };
        self.counted(route, Scope::User, limiter.check(&(route, uid.to_string())))
    }

    fn counted(
        &self,
        route: &'static str,
        scope: Scope,
        outcome: Result<(), RetryAfter>,
    ) -> Result<(), RetryAfter> {
        if outcome.is_err() {
            self.metrics.count_rate_limited(route, scope.label());
        }
        outcome
    }
}

/// The key of a client address: an IPv4 address as is, an IPv6 address by its /64, because one
/// subscriber gets a whole /64 and could otherwise take a new bucket per request.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_burst_passes_then_the_rate_refills_it() {
        let limiter = Limiter::new(3, 2.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check_at(&"a", t0), Ok(()));
        }
        // Empty: one token comes back in half a second, so wait 1 s (whole seconds, rounded up).
        assert_eq!(limiter.check_at(&"a", t0), Err(RetryAfter(1)));
        // Other keys have their own bucket.
        assert_eq!(limiter.check_at(&"b", t0), Ok(()));
        assert_eq!(limiter.check_at(&"a", t0 + secs(0.4)), Err(RetryAfter(1)));
        assert_eq!(limiter.check_at(&"a", t0 + secs(0.5)), Ok(()));
        assert!(limiter.check_at(&"a", t0 + secs(0.5)).is_err());
        // Long idle refills to the burst, never beyond it.
        let later = t0 + secs(3600.0);
        for _ in 0..3 {
            assert_eq!(limiter.check_at(&"a", later), Ok(()));
        }
        assert!(limiter.check_at(&"a", later).is_err());
    }

    #[test]
    fn retry_after_is_the_whole_seconds_until_a_token() {
        // 20 an hour: one token every 180 s.
        let limiter = Limiter::new(20, 20.0 / 3600.0);
        let t0 = Instant::now();
        for _ in 0..20 {
            limiter.check_at(&1, t0).unwrap();
        }
        assert_eq!(limiter.check_at(&1, t0), Err(RetryAfter(180)));
        assert_eq!(limiter.check_at(&1, t0 + secs(179.5)), Err(RetryAfter(1)));
        assert_eq!(limiter.check_at(&1, t0 + secs(180.0)), Ok(()));
        assert_eq!(RetryAfter(180).seconds(), 180);
    }

    #[test]
    fn refusals_spend_nothing() {
        let limiter = Limiter::new(1, 1.0);
        let t0 = Instant::now();
        limiter.check_at(&"k", t0).unwrap();
        for i in 1..10 {
            assert!(limiter
                .check_at(&"k", t0 + secs(0.1 * f64::from(i)))
                .is_err());
        }
        assert_eq!(limiter.check_at(&"k", t0 + secs(1.0)), Ok(()));
    }

    #[test]
    fn the_number_of_buckets_stays_bounded() {
        let max = SHARDS * 4;
        let limiter = Limiter::with_max_keys(2, 1.0, max);
        let t0 = Instant::now();
        for key in 0..max * 20 {
            limiter.check_at(&key, t0).unwrap();
            assert!(limiter.len() <= max, "{} buckets", limiter.len());
        }
    }

    /// Keys that land in the same shard as `key`.
    fn shard_mates(limiter: &Limiter<u64>, key: u64, n: usize) -> Vec<u64> {
        let shard = |k: &u64| limiter.hasher.hash_one(k) % SHARDS as u64;
        (0..)
            .filter(|k| *k != key && shard(k) == shard(&key))
            .take(n)
            .collect()
    }

    #[test]
    fn a_full_shard_forgets_refilled_buckets_first_then_the_oldest() {
        let limiter = Limiter::with_max_keys(2, 1.0, SHARDS * 4);
        let t0 = Instant::now();
        let hot = u64::MAX;
        let mates = shard_mates(&limiter, hot, 8);
        for key in &mates[..3] {
            limiter.check_at(key, t0).unwrap();
        }
        // The shard is full; at 1.5 s the three others have refilled, the hot key is empty.
        let t1 = t0 + secs(1.5);
        limiter.check_at(&hot, t1).unwrap();
        limiter.check_at(&hot, t1).unwrap();
        limiter.check_at(&mates[3], t1).unwrap();
        assert!(
            limiter.check_at(&hot, t1 + secs(0.1)).is_err(),
            "hot key kept"
        );

        // Four empty buckets, none refilled: a newcomer pushes out the one touched longest ago.
        let limiter = Limiter::with_max_keys(2, 1.0, SHARDS * 4);
        let mates = shard_mates(&limiter, hot, 5);
        for (i, key) in mates[..4].iter().enumerate() {
            let at = t0 + secs(0.1 * i as f64);
            limiter.check_at(key, at).unwrap();
            limiter.check_at(key, at).unwrap();
        }
        limiter.check_at(&mates[4], t0 + secs(0.4)).unwrap();
        let t2 = t0 + secs(0.5);
        assert!(limiter.check_at(&mates[1], t2).is_err(), "others kept");
        assert_eq!(limiter.check_at(&mates[0], t2), Ok(()), "oldest forgotten");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(client_key(v4), v4);
    }

    #[test]
    fn refusals_are_counted_by_route_and_scope() {
        let metrics = Arc::new(Metrics::new());
        let rate = Rate {
            burst: 1,
            per_second: 1.0,
        };
        let limits = RateLimits::new(Some(rate), Some(rate), metrics.clone());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        limits.client("/api/wxuser", ip).unwrap();
        assert!(limits.client("/api/wxuser", ip).is_err());
        limits.client("/api/phone", ip).unwrap();
        limits.user("/api/phone", "u1").unwrap();
        assert!(limits.user("/api/phone", "u1").is_err());
        limits.user("/api/token/refresh", "u1").unwrap();
        let text = metrics.render((0, 0));
        assert!(
            text.contains("wxlogin_rate_limited_total{route=\"/api/wxuser\",scope=\"client\"} 1")
        );
        assert!(text.contains("wxlogin_rate_limited_total{route=\"/api/phone\",scope=\"user\"} 1"));
        let off = RateLimits::new(None, None, metrics);
        for _ in 0..10 {
            off.client("/api/wxuser", ip).unwrap();
            off.user("/api/phone", "u1").unwrap();
        }
    }
}
