//! The `Date` header value: IMF-fixdate (RFC 9110 §5.6.7), formatted by hand and cached
//! per thread for the current second.
//!
//! Every response carries it, so formatting it once a second per thread (instead of once
//! per response) keeps it off the hot path without any locking.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) const LEN: usize = 29;

thread_local! {
    static CACHE: Cell<(u64, [u8; LEN])> = const { Cell::new((u64::MAX, [0; LEN])) };
}

/// Appends the current time as an IMF-fixdate.
pub(crate) fn append_now(out: &mut Vec<u8>) {
    // A clock before 1970 is a broken machine; 1970 is a harmless thing to send then.
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let formatted = CACHE.with(|cache| {
        let (at, text) = cache.get();
        if at == secs {
            text
        } else {
            let text = format(secs);
            cache.set((secs, text));
            text
        }
    });
    out.extend_from_slice(&formatted);
}

/// Formats seconds since the Unix epoch as an IMF-fixdate.
pub(crate) fn format(unix_secs: u64) -> [u8; LEN] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix_secs / 86_400;
    let secs_of_day = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);

    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    // 1970-01-01 was a Thursday, hence the table starts there.
    out[0..3].copy_from_slice(DAYS[(days % 7) as usize]);
    put2(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    // IMF-fixdate has a four-digit year; past 9999 we keep the last four digits rather
    // than break the fixed layout.
    put2(&mut out[12..14], year / 100 % 100);
    put2(&mut out[14..16], year % 100);
    put2(&mut out[17..19], h);
    put2(&mut out[20..22], m);
    put2(&mut out[23..25], s);
    out
}

fn put2(dst: &mut [u8], n: u64) {
    dst[0] = b'0' + (n / 10 % 10) as u8;
    dst[1] = b'0' + (n % 10) as u8;
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), proleptic Gregorian.
/// Howard Hinnant's `civil_from_days`, restricted to non-negative day counts.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(secs: u64) -> String {
        String::from_utf8(format(secs).to_vec()).unwrap()
    }

    #[test]
    fn format_matches_known_dates_when_given_fixed_instants() {
        let cases = [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_709_164_800, "Thu, 29 Feb 2024 00:00:00 GMT"),
            (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 GMT"),
            // 2100 is not a leap year.
            (4_107_456_000, "Sun, 28 Feb 2100 00:00:00 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
        ];
        for (secs, want) in cases {
            assert_eq!(text(secs), want, "{secs}");
        }
    }

    #[test]
    fn format_keeps_its_fixed_length_when_the_year_has_five_digits() {
        assert_eq!(text(253_402_300_800).len(), LEN);
    }

    #[test]
    fn append_now_writes_an_imf_fixdate_when_called_twice_in_a_second() {
        let mut a = Vec::new();
        append_now(&mut a);
        append_now(&mut a);
        assert_eq!(a.len(), 2 * LEN);
        assert!(a[..LEN].ends_with(b" GMT"));
    }
}
