//! Appending short byte strings without a call to `memcpy`.
//!
//! A copy whose length is known only at run time compiles to a call to the C library's
//! `memcpy`. glibc's is quick for a few bytes; musl's for x86_64, which the static build
//! links, starts `rep movs` whatever the length (rust-lang/rust#92993; its ARM ones are
//! tuned assembly and are left to do their job). Response heads and JSON
//! bodies are made of such pieces, a dozen bytes each: on a page of 100 users the body
//! alone made 1 100 calls, and `memcpy` took 31 % of the musl build's CPU (`perf`).
//! Pushing a short piece a byte at a time costs a few more instructions and no call:
//! static musl build, page of 100, server CPU 157 -> 107 us per request. With glibc the
//! call is the quicker (100 -> 107-120 us the other way), so only x86_64 musl builds push.

/// Pieces up to this long are pushed a byte at a time; longer ones are copied.
pub(crate) const SHORT: usize = 32;

/// Appends `piece` to `out`.
#[inline]
pub(crate) fn extend(out: &mut Vec<u8>, piece: &[u8]) {
    if cfg!(all(target_env = "musl", target_arch = "x86_64")) && piece.len() <= SHORT {
        push_bytes(out, piece);
    } else {
        out.extend_from_slice(piece);
    }
}

#[inline]
fn push_bytes(out: &mut Vec<u8>, piece: &[u8]) {
    out.reserve(piece.len());
    // A push per byte: a plain copy loop would be turned back into `memcpy`.
    for &b in piece {
        out.push(b);
    }
}

/// A `Vec` as an `io::Write` that appends through [`extend`]: what serde_json writes a
/// response body into (it writes every key and string value separately).
pub(crate) struct Writer<'a>(pub(crate) &'a mut Vec<u8>);

impl std::io::Write for Writer<'_> {
    #[inline]
    fn write(&mut self, piece: &[u8]) -> std::io::Result<usize> {
        extend(self.0, piece);
        Ok(piece.len())
    }

    #[inline]
    fn write_all(&mut self, piece: &[u8]) -> std::io::Result<()> {
        extend(self.0, piece);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_pieces_are_appended_whole_and_in_order() {
        let long = vec![b'x'; SHORT + 1];
        let pieces = [&b""[..], b"a", b"0123456789", &long[..SHORT], &long];
        // Both ways, whichever this build takes.
        for append in [extend, push_bytes] {
            let mut out = b"head:".to_vec();
            for piece in pieces {
                let before = out.len();
                append(&mut out, piece);
                assert_eq!(&out[before..], piece);
            }
            assert_eq!(out.len(), b"head:".len() + 1 + 10 + SHORT + SHORT + 1);
        }
    }

    #[test]
    fn serde_json_through_the_writer_matches_serde_json_into_a_vec() {
        let value = serde_json::json!({
            "first_name": "Zoë \"the\" \\ tester\n",
            "email": "a@b.c",
            "long": "y".repeat(100),
            "n": [1, 2.5, null, true],
        });
        let mut mine = Vec::new();
        serde_json::to_writer(Writer(&mut mine), &value).unwrap();
        assert_eq!(mine, serde_json::to_vec(&value).unwrap());
    }
}
