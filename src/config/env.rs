//! Reading the environment by the settings table: each value parsed as its declaration
//! says, with its declared default, and secrets taken from a variable, a `*_FILE` or a
//! systemd credential, never printed.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::settings::{Default, Parse, Setting};
use super::{ConfigError, err};

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

type Lookup<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// The environment, read only through declared settings (and systemd's
/// `CREDENTIALS_DIRECTORY`). An empty value counts as unset, as compose files and env
/// files write them.
pub(super) struct Env<'a>(Lookup<'a>);

impl<'a> Env<'a> {
    pub(super) fn new(lookup: impl Fn(&str) -> Option<String> + 'a) -> Env<'a> {
        Env(Box::new(move |name: &str| {
            lookup(name).filter(|v| !v.is_empty())
        }))
    }

    /// Nothing set: every setting at its default.
    pub(super) fn empty() -> Env<'static> {
        Env(Box::new(|_| None))
    }

    /// The raw value, when set.
    pub(super) fn get(&self, setting: &Setting) -> Option<String> {
        (self.0)(setting.name)
    }

    /// The value, or the declared default text.
    pub(super) fn text(&self, setting: &Setting) -> Option<String> {
        self.get(setting).or_else(|| match setting.default {
            Default::Text(t) => Some(t.to_owned()),
            _ => None,
        })
    }

    pub(super) fn require(&self, setting: &'static Setting) -> Result<String, ConfigError> {
        self.get(setting)
            .ok_or_else(|| err(setting.name, "not set (set it, or set DATABASE_URL)"))
    }

    /// A systemd credential's file, when `CREDENTIALS_DIRECTORY` is set and it exists.
    pub(super) fn credential(&self, name: &str) -> Option<PathBuf> {
        let path = PathBuf::from((self.0)("CREDENTIALS_DIRECTORY")?).join(name);
        path.exists().then_some(path)
    }

    /// A whole number in its declared range, its declared default when unset.
    pub(super) fn number<T>(&self, setting: &'static Setting) -> Result<T, ConfigError>
    where
        T: FromStr + TryFrom<u64> + TryInto<i128> + fmt::Display + Copy,
    {
        let Default::Number(default) = setting.default else {
            unreachable!("{} has no number for a default", setting.name)
        };
        let default = T::try_from(default)
            .unwrap_or_else(|_| unreachable!("{}'s default does not fit", setting.name));
        self.number_or(setting, default)
    }

    /// As [`Env::number`], with a default computed from other settings. The range bounds
    /// what is written: a computed default stands as it is, so that a setting at its
    /// maximum never makes another, unset, one fail (a day of `DB_STATEMENT_TIMEOUT_MS`
    /// gives a default query timeout half a second past a day).
    pub(super) fn number_or<T>(
        &self,
        setting: &'static Setting,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + TryInto<i128> + fmt::Display + Copy,
    {
        let Parse::Number { min, max } = setting.parse else {
            unreachable!("{} is not declared as a number", setting.name)
        };
        if self.get(setting).is_none() {
            return Ok(default);
        }
        let v = self.parse(setting, default)?;
        let wide: Option<i128> = v.try_into().ok();
        if wide.is_some_and(|w| (i128::from(min)..=i128::from(max)).contains(&w)) {
            Ok(v)
        } else {
            Err(err(
                setting.name,
                format!("{v} is out of range ({min} to {max})"),
            ))
        }
    }

    /// A number of milliseconds.
    pub(super) fn millis(&self, setting: &'static Setting) -> Result<Duration, ConfigError> {
        self.number(setting).map(Duration::from_millis)
    }

    /// A number of seconds.
    pub(super) fn secs(&self, setting: &'static Setting) -> Result<Duration, ConfigError> {
        self.number(setting).map(Duration::from_secs)
    }

    /// A decimal number in its declared range; a computed `default` stands as it is.
    pub(super) fn decimal_or(
        &self,
        setting: &'static Setting,
        default: f64,
    ) -> Result<f64, ConfigError> {
        let Parse::Decimal { min, max } = setting.parse else {
            unreachable!("{} is not declared as a decimal", setting.name)
        };
        if self.get(setting).is_none() {
            return Ok(default);
        }
        let v = self.parse(setting, default)?;
        if (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(err(
                setting.name,
                format!("{v} is out of range ({min} to {max})"),
            ))
        }
    }

    /// A decimal number, its declared default when unset.
    pub(super) fn decimal(&self, setting: &'static Setting) -> Result<f64, ConfigError> {
        let Default::Number(default) = setting.default else {
            unreachable!("{} has no number for a default", setting.name)
        };
        // The declared defaults are small whole numbers, which f64 holds exactly.
        self.decimal_or(setting, default as f64)
    }

    /// `true` or `false`.
    pub(super) fn flag(&self, setting: &'static Setting) -> Result<bool, ConfigError> {
        debug_assert!(matches!(setting.parse, Parse::Bool), "{}", setting.name);
        let default = matches!(setting.default, Default::Text("true"));
        self.parse(setting, default)
    }

    /// `host:port` with a literal IP address.
    pub(super) fn socket_addr(&self, setting: &'static Setting) -> Result<SocketAddr, ConfigError> {
        debug_assert!(
            matches!(setting.parse, Parse::SocketAddr),
            "{}",
            setting.name
        );
        let expected = "host:port with a literal IP address, e.g. 127.0.0.1:5000 or [::]:5000";
        let text = self.text(setting).unwrap_or_default();
        text.trim().parse().map_err(|_| {
            let v = self.get(setting).unwrap_or_default();
            err(
                setting.name,
                format!("{v:?} is not valid: expected {expected}"),
            )
        })
    }

    fn parse<T: FromStr>(&self, setting: &'static Setting, default: T) -> Result<T, ConfigError> {
        match self.get(setting) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| err(setting.name, format!("{v:?} is not a valid value"))),
        }
    }

    /// A secret from `var`, or the file named by `file_var`, or the systemd credential
    /// `credential`; both `var` and `file_var` at once is an error.
    pub(super) fn secret(
        &self,
        var: &'static Setting,
        file_var: &'static Setting,
        credential: &str,
    ) -> Result<Option<Secret>, ConfigError> {
        debug_assert!(var.secret && !file_var.secret, "{}", var.name);
        match (self.get(var), self.get(file_var)) {
            (Some(_), Some(_)) => Err(err(
                var.name,
                format!("set either {} or {}, not both", var.name, file_var.name),
            )),
            (Some(v), None) => Ok(Some(Secret(v))),
            (None, Some(path)) => read_secret(&path)
                .map(Some)
                .map_err(|e| err(file_var.name, e)),
            (None, None) => match self.credential(credential) {
                Some(path) => read_secret(&path.to_string_lossy())
                    .map(Some)
                    .map_err(|e| err(file_var.name, e)),
                None => Ok(None),
            },
        }
    }
}

fn read_secret(path: &str) -> Result<Secret, String> {
    let raw = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let value = raw.strip_suffix('\n').unwrap_or(&raw);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(format!("{path} is empty"));
    }
    Ok(Secret(value.to_owned()))
}
