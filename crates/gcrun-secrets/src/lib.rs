//! A secret given as a value, or as a file that is read again when it
//! changes: a mounted Kubernetes Secret is swapped in place on rotation,
//! and whoever holds a [`SecretSource`] sees the new value at its next use
//! without a restart.
//!
//! `SECRET_FILE=/path` wins over `SECRET=value` ([`SecretSource::from_env`]),
//! the convention of container images. A file's trailing newline is not
//! part of the secret. A change is seen by the file's modification time and
//! length, checked (one `stat`) at each use, so holders read the file only
//! when it changed. `Debug` shows the path, never the value.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use secrecy::SecretString;

/// The secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading the secret file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the secret file {0} is empty")]
    Empty(String),
    #[error("{0} and {0}_FILE are both set: give one")]
    Both(String),
}

#[derive(Clone)]
pub struct SecretSource {
    inner: Arc<Inner>,
}

enum Inner {
    Value(SecretString),
    File { path: PathBuf, cache: Mutex<Option<Cached>> },
}

struct Cached {
    modified: Option<SystemTime>,
    len: u64,
    value: SecretString,
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.inner {
            Inner::Value(_) => f.write_str("SecretSource::Value([redacted])"),
            Inner::File { path, .. } => write!(f, "SecretSource::File({})", path.display()),
        }
    }
}

impl SecretSource {
    pub fn value(value: impl Into<String>) -> Self {
        Self { inner: Arc::new(Inner::Value(SecretString::from(value.into()))) }
    }

    /// A file, read now (so a wrong path fails at start, not at first use).
    pub fn file(path: impl AsRef<Path>) -> Result<Self, SecretError> {
        let source =
            Self { inner: Arc::new(Inner::File { path: path.as_ref().to_path_buf(), cache: Mutex::new(None) }) };
        source.current()?;
        Ok(source)
    }

    /// `<name>_FILE` (a path) or `<name>` (the value) from the environment;
    /// `None` when neither is set. Both set is an error: which one wins
    /// would be a guess.
    pub fn from_env(name: &str) -> Result<Option<Self>, SecretError> {
        let value = std::env::var(name).ok().filter(|v| !v.is_empty());
        let file = std::env::var(format!("{name}_FILE")).ok().filter(|v| !v.is_empty());
        match (value, file) {
            (Some(_), Some(_)) => Err(SecretError::Both(name.to_string())),
            (_, Some(path)) => Self::file(path).map(Some),
            (Some(v), None) => Ok(Some(Self::value(v))),
            (None, None) => Ok(None),
        }
    }

    /// Whether this source is a file (it can change while the process runs).
    pub fn is_file(&self) -> bool {
        matches!(&*self.inner, Inner::File { .. })
    }

    /// The secret now: a file's content as it is on disk, read again only
    /// when its modification time or length changed.
    pub fn current(&self) -> Result<SecretString, SecretError> {
        let (path, cache) = match &*self.inner {
            Inner::Value(v) => return Ok(v.clone()),
            Inner::File { path, cache } => (path, cache),
        };
        let shown = || path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| SecretError::Read { path: shown(), source })?;
        let (modified, len) = (meta.modified().ok(), meta.len());
        let mut cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(c) = cache.as_ref().filter(|c| c.modified == modified && c.len == len) {
            return Ok(c.value.clone());
        }
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read { path: shown(), source })?;
        let trimmed = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
        if trimmed.is_empty() {
            return Err(SecretError::Empty(shown()));
        }
        let value = SecretString::from(trimmed.to_string());
        *cache = Some(Cached { modified, len, value: value.clone() });
        Ok(value)
    }
}

/// A secret that is parsed into something (a list of tokens, signing
/// keys), parsed again only when the secret changed. A change that does not
/// parse is an error at use; the previous value is not kept, so a bad
/// rotation shows at once instead of hiding behind the old secret.
pub struct Parsed<T> {
    source: SecretSource,
    parse: fn(&str) -> Result<T, String>,
    cache: Mutex<Option<(SecretString, Arc<T>)>>,
}

impl<T> std::fmt::Debug for Parsed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parsed").field("source", &self.source).finish_non_exhaustive()
    }
}

impl<T> Parsed<T> {
    /// Parses the source now (a bad secret fails at start).
    pub fn new(source: SecretSource, parse: fn(&str) -> Result<T, String>) -> Result<Self, String> {
        let parsed = Self { source, parse, cache: Mutex::new(None) };
        parsed.current()?;
        Ok(parsed)
    }

    /// The parsed secret now.
    pub fn current(&self) -> Result<Arc<T>, String> {
        use secrecy::ExposeSecret;
        let secret = self.source.current().map_err(|e| e.to_string())?;
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((seen, value)) = cache.as_ref() {
            if seen.expose_secret() == secret.expose_secret() {
                return Ok(value.clone());
            }
        }
        let value = Arc::new((self.parse)(secret.expose_secret())?);
        *cache = Some((secret, value.clone()));
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn a_file_is_read_again_when_it_changes_and_its_newline_is_not_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "first-secret\n").unwrap();
        let source = SecretSource::file(&path).unwrap();
        assert_eq!(source.current().unwrap().expose_secret(), "first-secret");
        // A rotation as Kubernetes does it: a new file swapped in.
        let next = dir.path().join("secret.new");
        std::fs::write(&next, "the-second-secret").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(source.current().unwrap().expose_secret(), "the-second-secret");
        assert!(format!("{source:?}").contains("secret") && !format!("{source:?}").contains("second"));
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(source.current(), Err(SecretError::Empty(_))));
        std::fs::remove_file(&path).unwrap();
        assert!(source.current().is_err(), "a missing file is an error, not the old value");
        assert!(SecretSource::file(dir.path().join("nope")).is_err(), "a wrong path fails at start");
        assert_eq!(format!("{:?}", SecretSource::value("v")), "SecretSource::Value([redacted])");
    }

    #[test]
    fn a_parsed_secret_follows_its_file_and_a_bad_rotation_is_an_error_not_the_old_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "a,b").unwrap();
        let split = |s: &str| -> Result<Vec<String>, String> {
            if s.contains(';') { Err("no ';' allowed".into()) } else { Ok(s.split(',').map(str::to_owned).collect()) }
        };
        let parsed = Parsed::new(SecretSource::file(&path).unwrap(), split).unwrap();
        assert_eq!(*parsed.current().unwrap(), vec!["a", "b"]);
        std::fs::write(&path, "a,b,c").unwrap();
        assert_eq!(*parsed.current().unwrap(), vec!["a", "b", "c"]);
        std::fs::write(&path, "a;b").unwrap();
        assert!(parsed.current().is_err());
    }
}
