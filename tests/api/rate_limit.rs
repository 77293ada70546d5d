//! The per-client rate limiter under many clients. These drive `RateLimiter` through its
//! public API rather than over HTTP: filling its table takes hundreds of thousands of
//! client addresses, which is seconds here and far too many requests for a test.
//! (`tests/chaos/rate_limit.rs` holds the limit over HTTP.)

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use user_api::rate_limit::RateLimiter;

/// The `n`th of many distinct client addresses, spread over the whole IPv4 space (a
/// multiplication by an odd constant visits every address once).
fn spread_v4(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(n.wrapping_mul(2_654_435_761)))
}

/// The `n`th of many distinct IPv6 /64 blocks.
fn spread_v6(n: u32) -> IpAddr {
    let high = n.wrapping_mul(2_654_435_761);
    IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0xdb8,
        (high >> 16) as u16,
        high as u16,
        0,
        0,
        0,
        1,
    ))
}

#[test]
fn many_clients_below_the_table_size_each_keep_a_limit_of_their_own() {
    // 20 000 clients (IPv4 and IPv6) is a fifth of the clients the limiter tracks: each
    // must get its burst of one and then be refused, whichever part of the table it is in.
    let limiter = RateLimiter::new(0.001, 1.0);
    let now = Instant::now();
    let clients: Vec<IpAddr> = (0..10_000u32)
        .map(spread_v4)
        .chain((0..10_000u32).map(spread_v6))
        .collect();

    let first_refused: Vec<&IpAddr> = clients
        .iter()
        .filter(|c| limiter.check(**c, now).is_err())
        .collect();
    let second_allowed: Vec<&IpAddr> = clients
        .iter()
        .filter(|c| limiter.check(**c, now).is_ok())
        .collect();

    assert!(
        first_refused.is_empty(),
        "{} clients were refused their first request, e.g. {:?}",
        first_refused.len(),
        first_refused.first()
    );
    assert!(
        second_allowed.is_empty(),
        "{} of {} clients were let past their limit, e.g. {:?}",
        second_allowed.len(),
        clients.len(),
        second_allowed.first()
    );
}

#[test]
fn a_new_address_is_still_limited_when_the_table_is_full() {
    // Arrange: far more busy clients than the table holds, none of them idle long enough
    // to be swept (one token an hour).
    let limiter = RateLimiter::new(1.0 / 3600.0, 1.0);
    let now = Instant::now();
    for n in 0..400_000u32 {
        let _ = limiter.check(spread_v4(n), now);
    }
    let newcomer = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

    // Act
    let answers: Vec<Result<(), Duration>> = (0..5).map(|_| limiter.check(newcomer, now)).collect();

    // Assert: the newcomer gets its burst of one and no more.
    let allowed = answers.iter().filter(|a| a.is_ok()).count();
    assert_eq!(
        allowed, 1,
        "a new address with a full table was allowed {allowed} of 5 requests at once: {answers:?}"
    );
}
