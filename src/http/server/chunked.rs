//! An incremental decoder for `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).
//!
//! It consumes whatever bytes have arrived and keeps its place between calls, so a body
//! that trickles in byte by byte costs linear time. Chunk extensions and trailer fields
//! are accepted and discarded; line endings must be CRLF, since a lenient reading here is
//! exactly what request smuggling exploits.

/// Where the decoder is within the chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex chunk size; `digits` seen so far.
    Size {
        value: u64,
        digits: u8,
    },
    /// Whitespace after the size, before `;` or CR.
    SizeSpace {
        value: u64,
    },
    /// Inside a chunk extension, up to CR.
    Extension {
        value: u64,
    },
    /// CR seen after the size line; LF must follow.
    SizeLf {
        value: u64,
    },
    /// Reading chunk data; bytes still to come.
    Data {
        left: u64,
    },
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line, up to CR.
    Trailer,
    /// CR seen at the end of a trailer field line.
    TrailerLf,
    /// CR seen on the final empty line.
    EndLf,
    Done,
}

/// What one call achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// All input consumed; the body is not complete yet.
    NeedMore,
    /// The body is complete; bytes after it belong to the next request.
    Done,
    /// The decoded body would pass the cap; stop reading it.
    TooLarge,
    /// The chunked framing is broken.
    Invalid,
}

/// Hex digits in a chunk size, at most: 16 fill a u64.
const MAX_SIZE_DIGITS: u8 = 16;

#[derive(Debug)]
pub(crate) struct Decoder {
    state: State,
    /// Bytes of chunk extensions and trailers seen; bounded like a head.
    meta_bytes: usize,
    max_meta_bytes: usize,
}

impl Decoder {
    /// A decoder whose extensions and trailers together may use `max_meta_bytes`.
    pub(crate) fn new(max_meta_bytes: usize) -> Decoder {
        Decoder {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            meta_bytes: 0,
            max_meta_bytes,
        }
    }

    /// Decodes from `input`, appending chunk data to `body` while it stays within `cap`.
    /// Returns how many input bytes were consumed and what that achieved.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        cap: usize,
    ) -> (usize, Progress) {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            let next = if let State::Data { left } = self.state {
                // Chunk data is copied in bulk; only the framing goes byte by byte.
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                body.extend_from_slice(&input[i..i + take]);
                i += take;
                match left - take as u64 {
                    0 => Ok(State::DataCr),
                    left => Ok(State::Data { left }),
                }
            } else {
                i += 1;
                self.step(input[i - 1], body.len(), cap)
            };
            match next {
                Ok(state) => self.state = state,
                Err(stop) => return (i, stop),
            }
        }
        if self.state == State::Done {
            (i, Progress::Done)
        } else {
            (i, Progress::NeedMore)
        }
    }

    /// The state after one framing byte, or why decoding stops.
    fn step(&mut self, b: u8, body_len: usize, cap: usize) -> Result<State, Progress> {
        let invalid = Err(Progress::Invalid);
        match self.state {
            State::Size { value, digits } => match (hex_value(b), b) {
                (Some(d), _) if digits < MAX_SIZE_DIGITS => Ok(State::Size {
                    value: value << 4 | u64::from(d),
                    digits: digits + 1,
                }),
                (Some(_), _) => invalid,
                (None, _) if digits == 0 => invalid,
                (None, b' ' | b'\t') => Ok(State::SizeSpace { value }),
                (None, b';') => Ok(State::Extension { value }),
                (None, b'\r') => Ok(State::SizeLf { value }),
                (None, _) => invalid,
            },
            State::SizeSpace { value } => match b {
                b' ' | b'\t' => Ok(State::SizeSpace { value }),
                b';' => Ok(State::Extension { value }),
                b'\r' => Ok(State::SizeLf { value }),
                _ => invalid,
            },
            State::Extension { value } => match b {
                b'\r' => Ok(State::SizeLf { value }),
                b'\n' => invalid,
                _ => self.count_meta().map(|()| State::Extension { value }),
            },
            State::SizeLf { value: 0 } if b == b'\n' => Ok(State::TrailerStart),
            State::SizeLf { value } if b == b'\n' => {
                let room = cap.saturating_sub(body_len);
                match usize::try_from(value) {
                    Ok(v) if v <= room => Ok(State::Data { left: value }),
                    _ => Err(Progress::TooLarge),
                }
            }
            State::DataCr if b == b'\r' => Ok(State::DataLf),
            State::DataLf if b == b'\n' => Ok(State::Size {
                value: 0,
                digits: 0,
            }),
            State::TrailerStart if b == b'\r' => Ok(State::EndLf),
            State::TrailerStart | State::Trailer if b == b'\r' => Ok(State::TrailerLf),
            State::TrailerStart | State::Trailer if b != b'\n' => {
                self.count_meta().map(|()| State::Trailer)
            }
            State::TrailerLf if b == b'\n' => Ok(State::TrailerStart),
            State::EndLf if b == b'\n' => Ok(State::Done),
            _ => invalid,
        }
    }

    /// Counts one byte of extension or trailer; invalid once past the budget.
    fn count_meta(&mut self) -> Result<(), Progress> {
        self.meta_bytes += 1;
        if self.meta_bytes <= self.max_meta_bytes {
            Ok(())
        } else {
            Err(Progress::Invalid)
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes all of `input` in one call.
    fn decode_all(input: &[u8], cap: usize) -> (Vec<u8>, usize, Progress) {
        let mut body = Vec::new();
        let (used, progress) = Decoder::new(64).decode(input, &mut body, cap);
        (body, used, progress)
    }

    #[test]
    fn body_is_decoded_when_chunks_are_well_formed() {
        let input = b"5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\nNEXT";
        let (body, used, progress) = decode_all(input, 100);
        assert_eq!(progress, Progress::Done);
        assert_eq!(body, b"hello, world");
        assert_eq!(&input[used..], b"NEXT");
    }

    #[test]
    fn body_is_decoded_when_extensions_and_trailers_are_present() {
        let input = b"3;name=value;x=\"q\"\r\nabc\r\nA ; ext\r\n0123456789\r\n0;last\r\nX-Trailer: 1\r\nY: 2\r\n\r\n";
        let (body, used, progress) = decode_all(input, 100);
        assert_eq!(progress, Progress::Done);
        assert_eq!(body, b"abc0123456789");
        assert_eq!(used, input.len());
    }

    #[test]
    fn body_is_decoded_when_fed_one_byte_at_a_time() {
        let input = b"4\r\nwiki\r\n5\r\npedia\r\n0\r\nT: x\r\n\r\n";
        let mut decoder = Decoder::new(64);
        let mut body = Vec::new();
        for (n, b) in input.iter().enumerate() {
            let (used, progress) = decoder.decode(std::slice::from_ref(b), &mut body, 100);
            assert_eq!(used, 1);
            let want = if n + 1 == input.len() {
                Progress::Done
            } else {
                Progress::NeedMore
            };
            assert_eq!(progress, want, "at byte {n}");
        }
        assert_eq!(body, b"wikipedia");
    }

    #[test]
    fn body_is_too_large_when_chunks_pass_the_cap() {
        let (_, _, progress) = decode_all(b"5\r\nhello\r\n6\r\n", 10);
        assert_eq!(progress, Progress::TooLarge);
        let (body, _, progress) = decode_all(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 10);
        assert_eq!((body.len(), progress), (10, Progress::Done));
        let (_, _, progress) = decode_all(b"ffffffffffffffff\r\n", 10);
        assert_eq!(progress, Progress::TooLarge);
    }

    #[test]
    fn body_is_invalid_when_framing_is_broken() {
        let cases: [&[u8]; 11] = [
            b"\r\n",
            b"x\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"-5\r\n",
            b"5 5\r\n",
            b"0\r\n\n",
            b"0\r\nX: 1\n\r\n",
            b"10000000000000000\r\n",
            b"0;ext\nmore\r\n",
        ];
        for input in cases {
            let (_, _, progress) = decode_all(input, 1 << 20);
            assert_eq!(
                progress,
                Progress::Invalid,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn body_is_invalid_when_trailers_pass_the_budget() {
        let mut input = b"0\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'a', 65));
        input.extend_from_slice(b"\r\n\r\n");
        assert_eq!(decode_all(&input, 10).2, Progress::Invalid);
    }
}
