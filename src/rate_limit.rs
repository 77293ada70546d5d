//! Per-client rate limiting: a token bucket per client address, in sharded maps with a
//! bounded number of entries.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Clients tracked at most. Past it, full (idle) buckets are swept; a client that still
/// finds no room is let through rather than tracked: a flood from that many addresses
/// is beyond what a per-address limit can stop anyway.
const MAX_CLIENTS: usize = 100_000;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
}

impl RateLimiter {
    /// `per_sec` tokens are added each second, up to `burst`.
    pub fn new(per_sec: f64, burst: f64) -> RateLimiter {
        RateLimiter {
            per_sec,
            burst: burst.max(1.0),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Takes a token for `client`; when there is none, how long until there is one.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = bucket_key(client);
        let shard = &self.shards[shard_of(&key)];
        // A poisoned lock only means another request panicked mid-update: the map is
        // still a valid map, so keep using it.
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(&key) && map.len() >= MAX_CLIENTS / SHARDS {
            let (per_sec, burst) = (self.per_sec, self.burst);
            map.retain(|_, b| refill(b, now, per_sec, burst) < burst);
            if map.len() >= MAX_CLIENTS / SHARDS {
                return Ok(());
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

fn shard_of(ip: &IpAddr) -> usize {
    let sum: usize = match ip {
        IpAddr::V4(a) => a.octets().iter().map(|&b| usize::from(b)).sum(),
        IpAddr::V6(a) => a.octets().iter().map(|&b| usize::from(b)).sum(),
    };
    sum % SHARDS
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

    #[test]
    fn limiter_keeps_memory_bounded_when_many_clients_appear() {
        let l = RateLimiter::new(1000.0, 1.0);
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 5_000) {
            let _ = l.check(IpAddr::V4(i.into()), t0);
        }
        let total: usize = l.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= MAX_CLIENTS, "{total}");
        // Later, idle buckets are swept to make room for new clients.
        let later = t0 + Duration::from_secs(1);
        assert!(l.check(ip("203.0.113.7"), later).is_ok());
        assert!(l.check(ip("203.0.113.7"), later).is_err());
    }
}
