//! The keys file: one key a line, `NAME SCOPES sha256:HEX`, read whole or refused whole.
//!
//! ```text
//! # name        scopes      SHA-256 of the secret
//! dashboard     read        sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! provisioning  read,write  sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
//! ```
//!
//! Fields are separated by spaces or tabs. Blank lines and lines starting with `#` are
//! ignored. Deliberate choices about awkward input: a UTF-8 byte-order mark at the start
//! and CRLF line endings are accepted (Windows editors write both); everything else that
//! is not a well-formed line is refused with its line number, as are duplicate names,
//! duplicate hashes (two names for one secret would make the log lie about who called),
//! and a file with no keys at all (it would lock every client out, which is more likely a
//! mistake, such as an empty mount, than an intent). A file others can read is accepted
//! with a warning.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::secret::{Digest, digest, parse_hash};
use super::{Key, KeySet, Scopes, check_name};

/// Larger files are refused unread: thousands of keys fit in far less.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// One thing wrong with a keys file; `line` is 1-based, `None` for the file as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<usize>,
    pub msg: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "line {n}: {}", self.msg),
            None => f.write_str(&self.msg),
        }
    }
}

/// Why a keys file was not loaded: every problem found, in line order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl LoadError {
    /// One line per problem, `FILE:LINE: what`, as `user-api keys check` prints them.
    pub fn lines(&self) -> Vec<String> {
        let path = self.path.display();
        self.problems
            .iter()
            .map(|p| match p.line {
                Some(n) => format!("{path}:{n}: {}", p.msg),
                None => format!("{path}: {}", p.msg),
            })
            .collect()
    }
}

/// One line: the first problem and how many more there are.
impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.lines().into_iter().next().unwrap_or_default();
        match self.problems.len() {
            0 | 1 => f.write_str(&first),
            n => write!(
                f,
                "{first} (and {} more; see `user-api keys check {}`)",
                n - 1,
                self.path.display()
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// A keys file that parsed, with what is worth a warning about it.
#[derive(Debug)]
pub struct Loaded {
    pub keys: KeySet,
    pub warnings: Vec<String>,
}

/// Reads and parses `path`.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let refuse = |msg: String| LoadError {
        path: path.to_owned(),
        problems: vec![Problem { line: None, msg }],
    };
    let file = std::fs::File::open(path).map_err(|e| refuse(format!("cannot read: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| refuse(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(refuse(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    let keys = parse(&bytes).map_err(|problems| LoadError {
        path: path.to_owned(),
        problems,
    })?;
    Ok(Loaded {
        keys,
        warnings: permission_warning(path, &meta).into_iter().collect(),
    })
}

/// SECURITY: the file holds no secret, but names, scopes and hashes are nobody else's
/// business, and a file anyone can read is often one anyone can also write.
fn permission_warning(path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o004 != 0).then(|| {
        format!(
            "{}: readable by every user (mode {mode:04o}); chmod o-rwx it",
            path.display()
        )
    })
}

/// Parses a whole file; any problem refuses all of it.
pub fn parse(bytes: &[u8]) -> Result<KeySet, Vec<Problem>> {
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let mut problems = Vec::new();
    let mut keys = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut hashes: HashMap<Digest, usize> = HashMap::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let mut problem = |msg: String| problems.push(Problem { line: Some(n), msg });
        let Ok(line) = std::str::from_utf8(raw) else {
            problem("not valid UTF-8".into());
            continue;
        };
        let line = line.trim_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Err(msg) => problem(msg),
            Ok(key) => {
                if let Some(first) = names.insert(key.name.clone(), n) {
                    problem(format!(
                        "duplicate name {:?} (first on line {first})",
                        key.name
                    ));
                } else if let Some(first) = hashes.insert(key.hash, n) {
                    problem(format!(
                        "the same hash as line {first}: one secret, one name"
                    ));
                } else {
                    keys.push(key);
                }
            }
        }
    }
    if problems.is_empty() && keys.is_empty() {
        problems.push(Problem {
            line: None,
            msg: "no keys: every request would get 401 (add a line `NAME SCOPES sha256:HEX`)"
                .into(),
        });
    }
    if problems.is_empty() {
        Ok(KeySet::new(keys))
    } else {
        Err(problems)
    }
}

fn parse_line(line: &str) -> Result<Key, String> {
    let fields: Vec<&str> = line.split([' ', '\t']).filter(|f| !f.is_empty()).collect();
    let [name, scopes, hash] = fields[..] else {
        return Err(format!(
            "expected 3 fields `NAME SCOPES sha256:HEX`, found {}",
            fields.len()
        ));
    };
    check_name(name)?;
    let scopes = Scopes::parse(scopes)?;
    let hash = parse_hash(hash)?;
    if hash == digest("") {
        return Err("that is the hash of an empty secret, which no client may use".into());
    }
    Ok(Key::new(name.to_owned(), scopes, hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::secret::{digest, format_hash};

    fn line(name: &str, scopes: &str, secret: &str) -> String {
        format!("{name} {scopes} {}", format_hash(&digest(secret)))
    }

    fn problems(text: &str) -> Vec<String> {
        match parse(text.as_bytes()) {
            Ok(set) => panic!("accepted {} keys from {text:?}", set.len()),
            Err(p) => p.iter().map(Problem::to_string).collect(),
        }
    }

    #[test]
    fn parse_reads_keys_and_skips_comments_and_blank_lines() {
        let text = format!(
            "# keys\n\n  {}\n\t# indented comment\n{}\t\n",
            line("dash", "read", "s1"),
            line("prov", "read,write", "s2").replace(' ', " \t ")
        );
        let set = parse(text.as_bytes()).unwrap();
        let got: Vec<String> = set
            .keys()
            .map(|k| format!("{} {}", k.name(), k.scopes()))
            .collect();
        assert_eq!(got, ["dash read", "prov read,write"]);
        assert_eq!(set.find("s2").map(Key::name), Some("prov"));
    }

    #[test]
    fn parse_accepts_crlf_line_endings_and_a_byte_order_mark() {
        let text = format!(
            "\u{feff}# from a Windows editor\r\n{}\r\n{}\r\n",
            line("a", "read", "s1"),
            line("b", "write", "s2")
        );
        let set = parse(text.as_bytes()).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.find("s1").map(Key::name), Some("a"));
        // A mark anywhere but the very start is not skipped.
        let late = format!(
            "{}\n\u{feff}{}\n",
            line("a", "read", "s1"),
            line("b", "read", "s2")
        );
        assert_eq!(problems(&late).len(), 1);
    }

    #[test]
    fn parse_refuses_each_bad_line_with_its_number() {
        let good = line("ok", "read", "s0");
        let text = [
            good.as_str(),
            &line("ok", "write", "s1"),
            &line("admin", "admin", "s2"),
            "short read sha256:abcd",
            &line("twin", "read", "s0"),
            "only-two read",
            &format!("{} extra", line("x", "read", "s3")),
            &line("bad name", "read", "s4"),
            &line("md5", "read", "s5").replace("sha256:", "md5:"),
            &line("emptyscope", ",read", "s6"),
            &line("nothing", "read", ""),
        ]
        .join("\n");
        let got = problems(&text);
        let numbers: Vec<&str> = got.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            numbers,
            [
                "line 2", "line 3", "line 4", "line 5", "line 6", "line 7", "line 8", "line 9",
                "line 10", "line 11"
            ],
            "{got:#?}"
        );
        assert!(
            got[0].contains("duplicate name \"ok\" (first on line 1)"),
            "{}",
            got[0]
        );
        assert!(got[1].contains("unknown scope \"admin\""), "{}", got[1]);
        assert!(got[2].contains("64 hex digits"), "{}", got[2]);
        assert!(got[3].contains("same hash as line 1"), "{}", got[3]);
        assert!(got[4].contains("expected 3 fields"), "{}", got[4]);
        assert!(got[5].contains("expected 3 fields"), "{}", got[5]);
        assert!(got[6].contains("expected 3 fields"), "{}", got[6]);
        assert!(got[7].contains("sha256:"), "{}", got[7]);
        assert!(got[8].contains("empty scope"), "{}", got[8]);
        assert!(got[9].contains("hash of an empty secret"), "{}", got[9]);
    }

    #[test]
    fn parse_refuses_a_file_without_keys() {
        for text in ["", "\n\n", "# only a comment\n", "\u{feff}", "\r\n"] {
            let got = problems(text);
            assert_eq!(got.len(), 1, "{text:?}: {got:?}");
            assert!(got[0].starts_with("no keys"), "{text:?}: {got:?}");
        }
    }

    #[test]
    fn parse_refuses_invalid_utf8_and_control_characters_without_panicking() {
        let mut bytes = line("a", "read", "s1").into_bytes();
        bytes.extend_from_slice(b"\n\xff\xfe read sha256:00\n");
        let got = parse(&bytes).unwrap_err();
        assert_eq!(got[0].line, Some(2));
        assert!(got[0].msg.contains("UTF-8"));
        let got = problems(&format!("{}\n", line("a\u{7}", "read", "s1")));
        assert!(got[0].starts_with("line 1: bad key name"), "{got:?}");
        let got = problems(&format!(
            "{}\n",
            line("a", "read", "s1").replace(' ', "\u{a0}")
        ));
        assert!(got[0].starts_with("line 1: expected 3 fields"), "{got:?}");
    }

    #[test]
    fn load_warns_about_a_world_readable_file_and_refuses_a_missing_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("user-api-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, line("a", "read", "s1")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(load(&path).unwrap().warnings.is_empty());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warnings = load(&path).unwrap().warnings;
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("readable by every user (mode 0644)"),
            "{warnings:?}"
        );
        let missing = load(&dir.join("nope")).unwrap_err();
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        let not_file = load(&dir).unwrap_err();
        assert!(
            not_file.to_string().contains("not a regular file"),
            "{not_file}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
