//! API keys: the set of keys in force (name, scopes, SHA-256 of the secret), the
//! constant-time look-up of a presented secret, and the store that swaps the whole set
//! atomically when the keys file is reloaded.
//!
//! The file format lives in [`file`], fresh secrets and their hashes in [`secret`].
//! Which scope a request needs is the route table's ([`crate::router`]) business; what
//! to answer, [`crate::auth`]'s.

pub mod file;
pub mod secret;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, PoisonError, RwLock};

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

pub use file::{LoadError, Problem};
pub use secret::Digest;

/// What a key may do. `Write` includes everything `Read` allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// GET and HEAD on /user and /users.
    Read,
    /// Every method on /user and /users.
    Write,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scopes of one key: a small set, written `read`, `write` or `read,write`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Scopes {
    read: bool,
    write: bool,
}

impl Scopes {
    pub const ALL: Scopes = Scopes {
        read: true,
        write: true,
    };

    /// Parses a comma-separated list; the error names the first unknown scope.
    pub fn parse(list: &str) -> Result<Scopes, String> {
        let mut scopes = Scopes::default();
        for word in list.split(',') {
            match Scope::parse(word) {
                Some(Scope::Read) => scopes.read = true,
                Some(Scope::Write) => scopes.write = true,
                None if word.is_empty() => return Err(format!("empty scope in {list:?}")),
                None => {
                    return Err(format!("unknown scope {word:?} (known: read, write)"));
                }
            }
        }
        Ok(scopes)
    }

    /// Whether a key with these scopes may do what `needed` asks: `write` covers reads.
    pub fn allows(self, needed: Scope) -> bool {
        match needed {
            Scope::Read => self.read || self.write,
            Scope::Write => self.write,
        }
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.read, self.write) {
            (true, true) => f.write_str("read,write"),
            (false, true) => f.write_str("write"),
            _ => f.write_str("read"),
        }
    }
}

/// A key name: 1 to 64 of `[A-Za-z0-9._-]`, so it can go into a log line and a metrics
/// label as it is, with nothing to escape.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad key name {:?}: use 1 to 64 of A-Z a-z 0-9 . _ -",
            name.chars().take(70).collect::<String>()
        ))
    }
}

/// One key. It holds the SHA-256 of its secret, never the secret.
pub struct Key {
    name: String,
    scopes: Scopes,
    hash: Digest,
    /// Requests made with this key; shared with the key of the same name in the set
    /// that replaces this one, so the counter survives a reload.
    requests: Arc<AtomicU64>,
}

impl Key {
    pub fn new(name: String, scopes: Scopes, hash: Digest) -> Key {
        Key {
            name,
            scopes,
            hash,
            requests: Arc::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn scopes(&self) -> Scopes {
        self.scopes
    }

    /// Counts one request made with this key.
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }
}

/// Names and scopes only: the hash is not a secret, but it has no business in a log.
impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({} {})", self.name, self.scopes)
    }
}

/// The keys in force: unique names and unique hashes (the file parser makes sure).
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    /// A set of `keys`; the caller has checked names and hashes are unique.
    pub fn new(keys: Vec<Key>) -> KeySet {
        KeySet { keys }
    }

    /// The one key of `API_TOKEN`: all scopes, named `api-token`.
    pub fn from_token(token: &str) -> KeySet {
        KeySet::new(vec![Key::new(
            "api-token".into(),
            Scopes::ALL,
            secret::digest(token),
        )])
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }

    /// The key whose secret is `presented`.
    ///
    /// SECURITY: the secret is hashed once, then compared with *every* key's hash in
    /// constant time, and the match is picked without a branch. The time taken depends
    /// only on the number of keys (public) and the presented length (the client's own),
    /// never on how much of a real secret or hash it shares, nor on which names exist.
    pub fn find(&self, presented: &str) -> Option<&Key> {
        let digest = secret::digest(presented);
        let index = position_ct(self.keys.iter().map(|k| &k.hash), &digest, digest_eq)?;
        self.keys.get(index)
    }

    /// Takes over the request counters of keys with the same name in `old`.
    fn inherit_counters(&mut self, old: &KeySet) {
        for key in &mut self.keys {
            if let Some(prev) = old.keys.iter().find(|k| k.name == key.name) {
                key.requests = Arc::clone(&prev.requests);
            }
        }
    }
}

/// Whether two digests are equal, in constant time: the XOR of four 64-bit words folded
/// with OR, then `subtle`'s comparison of that one word with zero. No branch and no early
/// exit; a tenth of the cost of `subtle`'s byte-by-byte slice comparison.
fn digest_eq(a: &Digest, b: &Digest) -> Choice {
    let mut diff = 0u64;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
        diff |= word(x) ^ word(y);
    }
    diff.ct_eq(&0)
}

/// The index of the hash equal to `digest`, comparing against all of them with `eq`
/// whatever matches, and selecting the index with a constant-time move. `eq` is a
/// parameter so a test can watch every comparison made.
fn position_ct<'a>(
    hashes: impl Iterator<Item = &'a Digest>,
    digest: &Digest,
    eq: impl Fn(&Digest, &Digest) -> Choice,
) -> Option<usize> {
    let mut found = Choice::from(0);
    let mut index = 0u64;
    for (i, hash) in hashes.enumerate() {
        let hit = eq(hash, digest);
        index.conditional_assign(&(i as u64), hit);
        found |= hit;
    }
    bool::from(found).then_some(index as usize)
}

/// The key set in force, swapped whole on reload: a request sees either the old set or
/// the new one, never a mix, and keeps the set it started with until it ends.
///
/// An `RwLock<Arc<_>>` rather than a lock-free swap crate: a request takes the read
/// lock only to clone the `Arc` (one atomic increment), and a reload is rare.
pub struct KeyStore {
    file: Option<PathBuf>,
    current: RwLock<Arc<KeySet>>,
}

/// What a reload changed, for its log line.
#[derive(Debug, PartialEq, Eq)]
pub struct Reloaded {
    pub keys: usize,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub warnings: Vec<String>,
}

impl KeyStore {
    /// A fixed set, as `API_TOKEN` gives: a reload has nothing to read.
    pub fn fixed(keys: KeySet) -> KeyStore {
        KeyStore {
            file: None,
            current: RwLock::new(Arc::new(keys)),
        }
    }

    /// The keys of `path`, read now; the warnings (a world-readable file) go with them.
    pub fn open(path: &Path) -> Result<(KeyStore, Vec<String>), LoadError> {
        let loaded = file::load(path)?;
        let store = KeyStore {
            file: Some(path.to_owned()),
            current: RwLock::new(Arc::new(loaded.keys)),
        };
        Ok((store, loaded.warnings))
    }

    /// The file the keys come from, if they come from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The set in force now.
    pub fn current(&self) -> Arc<KeySet> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Reads the file again and puts its keys in force. On any error the set in force
    /// stays as it is. `Ok(None)`: there is no file to read.
    pub fn reload(&self) -> Result<Option<Reloaded>, LoadError> {
        let Some(path) = &self.file else {
            return Ok(None);
        };
        let loaded = file::load(path)?;
        let mut keys = loaded.keys;
        let mut slot = self.current.write().unwrap_or_else(PoisonError::into_inner);
        keys.inherit_counters(&slot);
        let names = |set: &KeySet| -> Vec<String> { set.keys().map(|k| k.name.clone()).collect() };
        let (old, new) = (names(&slot), names(&keys));
        let reloaded = Reloaded {
            keys: keys.len(),
            added: new.iter().filter(|n| !old.contains(n)).cloned().collect(),
            removed: old.iter().filter(|n| !new.contains(n)).cloned().collect(),
            warnings: loaded.warnings,
        };
        *slot = Arc::new(keys);
        Ok(Some(reloaded))
    }
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("file", &self.file)
            .field("keys", &self.current().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn set(secrets: &[(&str, &str)]) -> KeySet {
        KeySet::new(
            secrets
                .iter()
                .map(|(name, s)| Key::new((*name).into(), Scopes::ALL, secret::digest(s)))
                .collect(),
        )
    }

    #[test]
    fn find_returns_the_key_whose_secret_was_presented() {
        let keys = set(&[("a", "secret-a"), ("b", "secret-b"), ("c", "secret-c")]);
        assert_eq!(keys.find("secret-b").map(Key::name), Some("b"));
        assert_eq!(keys.find("secret-a").map(Key::name), Some("a"));
        assert_eq!(keys.find("secret-c").map(Key::name), Some("c"));
        assert!(keys.find("secret-").is_none());
        assert!(keys.find("secret-bb").is_none());
        assert!(keys.find("").is_none());
        assert!(KeySet::default().find("secret-a").is_none());
    }

    /// SECURITY: the structural guarantee behind "timing does not depend on a shared
    /// prefix": whatever is presented, a found key or not, sharing much or nothing with a
    /// real secret, the look-up makes one comparison per key, each of two 32-byte
    /// digests, and never compares the presented text itself.
    #[test]
    fn lookup_compares_fixed_length_digests_with_every_key_whatever_is_presented() {
        let real = "uak_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let keys = set(&[("first", real), ("second", "other"), ("third", "x")]);
        let hashes: Vec<Digest> = keys.keys().map(|k| k.hash).collect();
        let mut presented: Vec<String> = (0..=real.len()).map(|n| real[..n].to_owned()).collect();
        presented.push(format!("{real}0"));
        presented.push(real.to_owned());
        presented.push("other".to_owned());
        for p in &presented {
            let calls = RefCell::new(Vec::new());
            let digest = secret::digest(p);
            let found = position_ct(hashes.iter(), &digest, |a, b| {
                calls.borrow_mut().push((a.len(), b.len()));
                digest_eq(a, b)
            });
            let calls = calls.into_inner();
            assert_eq!(calls.len(), hashes.len(), "{p:?}: one comparison per key");
            assert!(calls.iter().all(|&c| c == (32, 32)), "{p:?}: {calls:?}");
            assert_eq!(found.is_some(), p == real || p == "other", "{p:?}");
        }
    }

    #[test]
    fn digest_eq_sees_a_difference_in_any_byte() {
        let a = secret::digest("x");
        assert!(bool::from(digest_eq(&a, &a)));
        for i in 0..32 {
            for bit in [0x01, 0x80] {
                let mut b = a;
                b[i] ^= bit;
                assert!(!bool::from(digest_eq(&a, &b)), "byte {i} bit {bit:#x}");
            }
        }
    }

    #[test]
    fn scopes_parse_and_write_covers_read() {
        let read = Scopes::parse("read").unwrap();
        let write = Scopes::parse("write").unwrap();
        let both = Scopes::parse("read,write").unwrap();
        assert!(read.allows(Scope::Read) && !read.allows(Scope::Write));
        assert!(write.allows(Scope::Read) && write.allows(Scope::Write));
        assert_eq!(both, Scopes::ALL);
        assert_eq!(
            (read.to_string(), write.to_string(), both.to_string()),
            ("read".into(), "write".into(), "read,write".into())
        );
        for bad in ["", "admin", "read,", "Read", "read write", ",write"] {
            assert!(Scopes::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_short_and_need_no_escaping() {
        for good in ["dashboard", "prov-job_2.old", &"a".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a\"b", "ünï", "a\nb", "x=y", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reload_inherits_counters_by_name() {
        let old = set(&[("keep", "1"), ("gone", "2")]);
        old.keys[0].count_request();
        old.keys[1].count_request();
        let mut new = set(&[("keep", "3"), ("fresh", "4")]);
        new.inherit_counters(&old);
        let counts: Vec<(&str, u64)> = new.keys().map(|k| (k.name(), k.requests())).collect();
        assert_eq!(counts, [("keep", 1), ("fresh", 0)]);
    }
}
