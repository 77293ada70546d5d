//! Fresh secrets from the operating system's CSPRNG, and the SHA-256 digest a keys file
//! stores in their place, written `sha256:` and 64 hex digits.
//!
//! SECURITY: plain SHA-256, not a password hash, because the secrets are 256 random bits
//! made by [`generate`]: nobody can guess one, so slowing guesses down buys nothing, and
//! a digest cannot be turned back into a secret (docs/api-keys.md says more).

use sha2::{Digest as _, Sha256};

/// A SHA-256 digest. A fixed-size array, so every comparison is over 32 bytes.
pub type Digest = [u8; 32];

/// What every secret `user-api keys new` makes starts with, so a secret scanner (or a
/// person) can tell one in a paste or a log.
pub const PREFIX: &str = "uak_";

/// SHA-256 of `secret`'s bytes.
pub fn digest(secret: &str) -> Digest {
    Sha256::digest(secret.as_bytes()).into()
}

/// A new secret: [`PREFIX`] and 32 bytes from the OS CSPRNG (`getrandom(2)`) in hex.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{PREFIX}{}", hex(&bytes)))
}

/// `sha256:` and the digest in lower-case hex, as a keys file writes it.
pub fn format_hash(d: &Digest) -> String {
    format!("sha256:{}", hex(d))
}

/// The digest of `sha256:` and 64 hex digits (either case), or what is wrong with it.
pub fn parse_hash(s: &str) -> Result<Digest, String> {
    let Some(hex) = s.strip_prefix("sha256:") else {
        return Err("the hash must start with \"sha256:\"".into());
    };
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return Err(format!(
            "the hash must be 64 hex digits after \"sha256:\", not {}",
            hex.chars().count()
        ));
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let (Some(hi), Some(lo)) = (nibble(pair[0]), nibble(pair[1])) else {
            return Err("the hash has a character that is not a hex digit".into());
        };
        out[i] = hi << 4 | lo;
    }
    Ok(out)
}

fn nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_the_published_sha256_test_vector() {
        // FIPS 180-2, appendix B.1: SHA-256("abc").
        assert_eq!(
            format_hash(&digest("abc")),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parse_hash_reads_what_format_hash_writes_in_either_case() {
        let d = digest("some secret");
        assert_eq!(parse_hash(&format_hash(&d)), Ok(d));
        assert_eq!(
            parse_hash(&format_hash(&d).to_uppercase().replace("SHA256", "sha256")),
            Ok(d)
        );
    }

    #[test]
    fn parse_hash_refuses_anything_else() {
        let good = format_hash(&digest("x"));
        for bad in [
            "",
            "sha256:",
            &good[7..],
            &good[..good.len() - 1],
            &format!("{good}0"),
            &good.replace("sha256:", "md5:"),
            &format!("{}g", &good[..good.len() - 1]),
            &format!("{}é", &good[..good.len() - 2]),
        ] {
            assert!(parse_hash(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generated_secrets_are_256_random_bits_with_the_prefix() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        for s in [&a, &b] {
            let hex = s.strip_prefix(PREFIX).expect("prefix");
            assert_eq!(hex.len(), 64, "{s}");
            assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()), "{s}");
        }
    }
}
