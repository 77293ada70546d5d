//! Per-client rate limiting: a token bucket per client address, in sharded maps with a
//! bounded number of entries.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Clients tracked at most. Past it, full (idle) buckets are swept, and if that frees
/// nothing the least recently seen eighth of the shard is forgotten: every client is
/// always tracked, so a flood of new addresses can never switch the limit off.
const MAX_CLIENTS: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The request rate allowed per client address (`RATE_LIMIT_PER_SEC`, `RATE_LIMIT_BURST`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Requests a client may make per second, on average.
    pub per_second: f64,
    /// Requests a client may make at once before the rate applies.
    pub burst: f64,
}

pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
    /// SECURITY: keyed with per-process random keys, so a client cannot choose
    /// addresses that all land in one shard.
    shard_hasher: RandomState,
}

impl RateLimiter {
    /// `per_sec` tokens are added each second, up to `burst`.
    pub fn new(per_sec: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            per_sec,
            burst: burst.max(1.0),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            shard_hasher: RandomState::new(),
        }
    }

    /// Takes a token for `client`; when there is none, how long until there is one.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = bucket_key(client);
        // The modulo keeps the value below SHARDS, so the cast cannot truncate it.
        let shard = &self.shards[(self.shard_hasher.hash_one(key) % SHARDS as u64) as usize];
        // A poisoned lock only means another request panicked mid-update: the map is
        // still a valid map, so keep using it.
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(&key) && map.len() >= MAX_CLIENTS / SHARDS {
            let (per_sec, burst) = (self.per_sec, self.burst);
            map.retain(|_, b| refill(b, now, per_sec, burst) < burst);
            if map.len() >= MAX_CLIENTS / SHARDS {
                forget_least_recent(&mut map);
            }
        }
        let b = map.entry(key).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let tokens = refill(b, now, self.per_sec, self.burst);
        if tokens >= 1.0 {
            b.tokens = tokens - 1.0;
            b.at = now;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - tokens) / self.per_sec))
        }
    }
}

fn refill(b: &Bucket, now: Instant, per_sec: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + elapsed * per_sec).min(burst)
}

/// IPv6 clients are limited per /64, the block one subscriber usually holds; IPv4
/// (and IPv4-mapped IPv6) per address.
fn bucket_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Drops the eighth of `map` seen least recently (at least one entry), so that a full
/// shard makes room in one pass every few thousand new clients, not on each.
fn forget_least_recent(map: &mut HashMap<IpAddr, Bucket>) {
    let mut times: Vec<Instant> = map.values().map(|b| b.at).collect();
    let k = (times.len() / 8).min(times.len().saturating_sub(1));
    let (_, cutoff, _) = times.select_nth_unstable(k);
    let cutoff = *cutoff;
    map.retain(|_, b| b.at > cutoff);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limiter_allows_a_burst_then_refuses_with_a_wait() {
        let l = RateLimiter::new(2.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.check(ip("10.0.0.1"), t0).is_ok());
        }
        let wait = l.check(ip("10.0.0.1"), t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(400) && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        assert!(
            l.check(ip("10.0.0.2"), t0).is_ok(),
            "another client has its own bucket"
        );
        assert!(
            l.check(ip("10.0.0.1"), t0 + Duration::from_millis(500))
                .is_ok()
        );
        assert!(
            l.check(ip("10.0.0.1"), t0 + Duration::from_millis(500))
                .is_err()
        );
    }

    #[test]
    fn limiter_groups_ipv6_clients_by_64_prefix() {
        let l = RateLimiter::new(1.0, 1.0);
        let t0 = Instant::now();
        assert!(l.check(ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(l.check(ip("2001:db8:1:2:ffff::9"), t0).is_err());
        assert!(l.check(ip("2001:db8:1:3::1"), t0).is_ok());
    }

    /// A limiter at `rate` requests a second (burst 1) that 5 000 more clients than its
    /// table holds have just called on, and the moment they did.
    fn flooded(rate: f64) -> (RateLimiter, Instant) {
        let l = RateLimiter::new(rate, 1.0);
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 5_000) {
            let _ = l.check(IpAddr::V4(i.into()), t0);
        }
        (l, t0)
    }

    #[test]
    fn limiter_keeps_memory_bounded_when_many_clients_appear() {
        let (l, t0) = flooded(1000.0);
        let total: usize = l.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= MAX_CLIENTS, "{total}");
        // Later, idle buckets are swept to make room for new clients.
        let later = t0 + Duration::from_secs(1);
        assert!(l.check(ip("203.0.113.7"), later).is_ok());
        assert!(l.check(ip("203.0.113.7"), later).is_err());
    }

    #[test]
    fn limiter_still_limits_a_new_client_when_the_table_is_full_of_active_ones() {
        // Buckets that are not full cannot be swept: the table stays full.
        let (l, t0) = flooded(0.001);
        let fresh = ip("203.0.113.99");
        assert!(l.check(fresh, t0).is_ok());
        for n in 0..50 {
            assert!(l.check(fresh, t0).is_err(), "request {n} passed");
        }
        let total: usize = l.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= MAX_CLIENTS, "{total}");
    }
}
