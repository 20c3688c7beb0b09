//! The `encrypted` provider: a JSON map of secrets sealed into one file (see [`super::sealed`]),
//! rewritten atomically (temporary file, 0600, fsync, rename) under the directory's lock.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::sealed::{self, KEY_LEN, KeyKind, SALT_LEN, SealError, SecretKey};
use super::{SecretsDir, SecretsError, Setup, io_err};

/// Largest store read: far more than any set of environment variables could use.
const MAX_STORE_BYTES: u64 = 16 * 1024 * 1024;

/// What is sealed.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Contents {
    secrets: BTreeMap<String, String>,
}

impl Drop for Contents {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for v in self.secrets.values_mut() {
            v.zeroize();
        }
    }
}

/// An open encrypted store: its paths and the key that opened it.
pub struct EncryptedStore {
    path: PathBuf,
    dir: SecretsDir,
    kind: KeyKind,
    salt: [u8; SALT_LEN],
    key: SecretKey,
}

impl std::fmt::Debug for EncryptedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedStore").field("path", &self.path).field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl EncryptedStore {
    /// Opens the store in `dir`, with `password` when it is keyed by a passphrase; the key is
    /// checked by decrypting the store once.
    pub fn open(dir: &SecretsDir, password: Option<&str>) -> Result<Self, SecretsError> {
        let path = dir.store_path();
        let Some(bytes) = read_bounded(&path)? else {
            return Err(SecretsError::StoreMissing(path));
        };
        let header = sealed::header(&bytes).map_err(|e| corrupt(&path, &e))?;
        let key = match header.kind {
            KeyKind::KeyFile => read_key_file(&dir.key_path())?,
            KeyKind::Passphrase => {
                let pw = password.ok_or_else(|| SecretsError::PasswordMissing(path.clone()))?;
                sealed::derive_key(pw.as_bytes(), &header.salt)?
            }
        };
        let store = EncryptedStore { path, dir: dir.clone(), kind: header.kind, salt: header.salt, key };
        store.decode(&bytes)?;
        Ok(store)
    }

    /// `setup`: opens the existing store, or creates an empty one keyed by `password` if given,
    /// else by the key file (created if missing). The caller holds the directory lock.
    pub(super) fn create_or_open(dir: &SecretsDir, password: Option<&str>) -> Result<Setup, SecretsError> {
        dir.ensure()?;
        if dir.store_path().exists() {
            let store = EncryptedStore::open(dir, password)?;
            return Ok(Setup::Existing(store.kind));
        }
        let salt = sealed::random_salt()?;
        let (kind, key) = match password {
            Some(pw) => (KeyKind::Passphrase, sealed::derive_key(pw.as_bytes(), &salt)?),
            None => (KeyKind::KeyFile, ensure_key_file(&dir.key_path())?),
        };
        let store = EncryptedStore { path: dir.store_path(), dir: dir.clone(), kind, salt, key };
        store.write(&Contents::default())?;
        Ok(Setup::Created(kind))
    }

    /// How this store is keyed.
    pub fn key_kind(&self) -> KeyKind {
        self.kind
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Result<Option<Zeroizing<String>>, SecretsError> {
        let contents = self.read()?;
        Ok(contents.secrets.get(name).map(|v| Zeroizing::new(v.clone())))
    }

    /// Every name, sorted.
    pub fn list(&self) -> Result<Vec<String>, SecretsError> {
        Ok(self.read()?.secrets.keys().cloned().collect())
    }

    /// Sets `name` to `value`.
    pub fn set(&self, name: &str, value: &str) -> Result<(), SecretsError> {
        let _lock = self.dir.lock()?;
        let mut contents = self.read()?;
        contents.secrets.insert(name.to_owned(), value.to_owned());
        self.write(&contents)
    }

    /// Removes `name`; false if it was not there.
    pub fn delete(&self, name: &str) -> Result<bool, SecretsError> {
        let _lock = self.dir.lock()?;
        let mut contents = self.read()?;
        let Some(mut old) = contents.secrets.remove(name) else {
            return Ok(false);
        };
        zeroize::Zeroize::zeroize(&mut old);
        self.write(&contents)?;
        Ok(true)
    }

    fn read(&self) -> Result<Contents, SecretsError> {
        let bytes = read_bounded(&self.path)?.ok_or_else(|| SecretsError::StoreMissing(self.path.clone()))?;
        self.decode(&bytes)
    }

    fn decode(&self, bytes: &[u8]) -> Result<Contents, SecretsError> {
        let plain = sealed::open(&self.key, bytes).map_err(|e| match e {
            SealError::Decrypt => SecretsError::WrongKey {
                path: self.path.clone(),
                hint: match self.kind {
                    KeyKind::KeyFile => "the key file does not match it, or the file was changed",
                    KeyKind::Passphrase => "wrong APIARY_SECRETS_PASSWORD, or the file was changed",
                },
            },
            other => corrupt(&self.path, &other),
        })?;
        serde_json::from_slice(&plain).map_err(|e| SecretsError::Corrupt {
            path: self.path.clone(),
            // The parser's message quotes no input beyond a position, so no value leaks here.
            why: format!("decrypted, but not a secrets map (line {}, column {})", e.line(), e.column()),
        })
    }

    fn write(&self, contents: &Contents) -> Result<(), SecretsError> {
        let plain = Zeroizing::new(
            serde_json::to_vec(contents)
                .map_err(|e| SecretsError::Corrupt { path: self.path.clone(), why: format!("cannot encode: {e}") })?,
        );
        let bytes = sealed::seal(self.kind, &self.salt, &self.key, &plain)?;
        // A temporary file in the same directory (0600), synced, then renamed over the store.
        crate::state::write_atomic(&self.path, &bytes)?;
        Ok(())
    }
}

fn corrupt(path: &Path, e: &SealError) -> SecretsError {
    SecretsError::Corrupt { path: path.to_path_buf(), why: e.to_string() }
}

/// The file's bytes, `None` when it does not exist; refuses files over the bound.
fn read_bounded(path: &Path) -> Result<Option<Vec<u8>>, SecretsError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_STORE_BYTES + 1).read_to_end(&mut bytes).map_err(io_err(path))?;
    if bytes.len() as u64 > MAX_STORE_BYTES {
        return Err(SecretsError::Corrupt {
            path: path.to_path_buf(),
            why: format!("larger than {MAX_STORE_BYTES} bytes"),
        });
    }
    Ok(Some(bytes))
}

/// Reads the key file: 64 hex digits; refused when other users may read or write it.
fn read_key_file(path: &Path) -> Result<SecretKey, SecretsError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(SecretsError::KeyFileMissing(path.into())),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretsError::KeyFileMode { path: path.into(), mode });
    }
    let text = Zeroizing::new(std::fs::read(path).map_err(io_err(path))?);
    let hex = text.strip_suffix(b"\n").unwrap_or(&text);
    if hex.len() != KEY_LEN * 2 {
        return Err(SecretsError::KeyFileCorrupt(path.into()));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        let (Some(hi), Some(lo)) = (digit(pair[0]), digit(pair[1])) else {
            return Err(SecretsError::KeyFileCorrupt(path.into()));
        };
        // Two hex digits always fit a byte.
        key[i] = u8::try_from(hi * 16 + lo).map_err(|_| SecretsError::KeyFileCorrupt(path.into()))?;
    }
    Ok(key)
}

/// The existing key file's key, or a new random one written to a new 0600 file.
fn ensure_key_file(path: &Path) -> Result<SecretKey, SecretsError> {
    if path.exists() {
        return read_key_file(path);
    }
    let key = sealed::random_key()?;
    let mut hex = Zeroizing::new(String::with_capacity(KEY_LEN * 2 + 1));
    for b in key.iter() {
        hex.push_str(&format!("{b:02x}"));
    }
    hex.push('\n');
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io_err(path))?;
    file.write_all(hex.as_bytes()).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::secrets::{ProviderKind, Secrets, SecretsEnv};

    fn env_with(password: Option<&str>) -> SecretsEnv {
        SecretsEnv { password: password.map(|p| Zeroizing::new(p.to_owned())), ..SecretsEnv::default() }
    }

    #[test]
    fn key_file_store_round_trips_and_persists() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SecretsDir::at(tmp.path().join("secrets"));
        assert!(matches!(dir.open(&env_with(None)), Err(SecretsError::NotSetUp)));
        assert_eq!(dir.setup(ProviderKind::Encrypted, &env_with(None)).unwrap(), Setup::Created(KeyKind::KeyFile));
        for p in [dir.store_path(), dir.key_path()] {
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600, "{}", p.display());
        }
        assert_eq!(std::fs::metadata(dir.root()).unwrap().permissions().mode() & 0o777, 0o700);
        let s = dir.open(&env_with(None)).unwrap();
        s.set("b-token", "value-one").unwrap();
        s.set("a_token", "value-two").unwrap();
        s.set("b-token", "value-three").unwrap();
        // A second opening sees the writes: they are on disk, not in memory.
        let s = dir.open(&env_with(None)).unwrap();
        assert_eq!(s.list().unwrap(), ["a_token", "b-token"]);
        assert_eq!(s.get("b-token").unwrap().unwrap().as_str(), "value-three");
        assert!(s.get("zzz").unwrap().is_none());
        let raw = std::fs::read(dir.store_path()).unwrap();
        assert!(!raw.windows(11).any(|w| w == b"value-three"), "plaintext on disk");
        s.delete("a_token").unwrap();
        assert!(matches!(s.delete("a_token"), Err(SecretsError::NotFound { .. })));
        assert_eq!(s.list().unwrap(), ["b-token"]);
        // setup again keeps the store.
        assert_eq!(dir.setup(ProviderKind::Encrypted, &env_with(None)).unwrap(), Setup::Existing(KeyKind::KeyFile));
        assert_eq!(dir.open(&env_with(None)).unwrap().list().unwrap(), ["b-token"]);
    }

    #[test]
    fn wrong_key_corruption_and_bad_key_files_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SecretsDir::at(tmp.path());
        dir.setup(ProviderKind::Encrypted, &env_with(None)).unwrap();
        dir.open(&env_with(None)).unwrap().set("x", "y").unwrap();
        let key = std::fs::read(dir.key_path()).unwrap();

        // Another key.
        std::fs::write(dir.key_path(), format!("{}\n", "ab".repeat(32))).unwrap();
        assert!(matches!(dir.open(&env_with(None)), Err(SecretsError::WrongKey { .. })));
        // Not a key.
        std::fs::write(dir.key_path(), "nonsense\n").unwrap();
        assert!(matches!(dir.open(&env_with(None)), Err(SecretsError::KeyFileCorrupt(_))));
        // Open to others.
        std::fs::write(dir.key_path(), &key).unwrap();
        std::fs::set_permissions(dir.key_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(dir.open(&env_with(None)), Err(SecretsError::KeyFileMode { mode: 0o644, .. })));
        std::fs::set_permissions(dir.key_path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(dir.open(&env_with(None)).unwrap().list().unwrap(), ["x"]);

        // A flipped byte in the body.
        let good = std::fs::read(dir.store_path()).unwrap();
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x40;
        std::fs::write(dir.store_path(), &bad).unwrap();
        assert!(matches!(dir.open(&env_with(None)), Err(SecretsError::WrongKey { .. })));
        // Garbage and an empty file.
        std::fs::write(dir.store_path(), b"garbage").unwrap();
        assert!(matches!(dir.open(&env_with(None)), Err(SecretsError::Corrupt { .. })));
        std::fs::write(dir.store_path(), b"").unwrap();
        assert!(matches!(dir.open(&env_with(None)), Err(SecretsError::Corrupt { .. })));
        // Key file gone.
        std::fs::write(dir.store_path(), &good).unwrap();
        std::fs::remove_file(dir.key_path()).unwrap();
        assert!(matches!(dir.open(&env_with(None)), Err(SecretsError::KeyFileMissing(_))));
        // reset-keyring removes what is left; setup starts over with an empty store.
        assert_eq!(dir.reset_keyring().unwrap(), [dir.store_path()]);
        dir.setup(ProviderKind::Encrypted, &env_with(None)).unwrap();
        assert!(dir.open(&env_with(None)).unwrap().list().unwrap().is_empty());
    }

    #[test]
    fn passphrase_store_needs_the_passphrase() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SecretsDir::at(tmp.path());
        let pw = env_with(Some("hunter2-but-longer"));
        assert_eq!(dir.setup(ProviderKind::Encrypted, &pw).unwrap(), Setup::Created(KeyKind::Passphrase));
        assert!(!dir.key_path().exists(), "a passphrase store makes no key file");
        dir.open(&pw).unwrap().set("n", "v").unwrap();
        assert!(matches!(dir.open(&env_with(None)), Err(SecretsError::PasswordMissing(_))));
        assert!(matches!(dir.open(&env_with(Some("wrong"))), Err(SecretsError::WrongKey { .. })));
        assert_eq!(dir.open(&pw).unwrap().get("n").unwrap().unwrap().as_str(), "v");
    }

    #[test]
    fn environment_provider_is_read_only_and_resolves() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SecretsDir::at(tmp.path());
        let env = SecretsEnv {
            provider: Some("environment".into()),
            environment: crate::secrets::EnvironmentProvider::from_pairs([("TOOLHIVE_SECRET_tok".into(), "v".into())]),
            ..SecretsEnv::default()
        };
        let s = dir.open(&env).unwrap();
        assert!(matches!(s, Secrets::Environment(_)));
        assert!(matches!(s.set("a", "b"), Err(SecretsError::ReadOnly(_))));
        assert!(matches!(s.delete("tok"), Err(SecretsError::ReadOnly(_))));
        let refs = [apiary_config::SecretRef { name: "tok".into(), target: "T".into() }];
        let got = s.resolve(&refs).unwrap();
        assert_eq!((got[0].0.as_str(), got[0].1.as_str()), ("T", "v"));
        let refs = [
            apiary_config::SecretRef { name: "nope".into(), target: "A".into() },
            apiary_config::SecretRef { name: "gone".into(), target: "B".into() },
        ];
        let err = s.resolve(&refs).unwrap_err().to_string();
        assert!(err.contains("nope, gone"), "{err}");
        assert!(matches!(
            dir.open(&SecretsEnv { provider: Some("vault".into()), ..SecretsEnv::default() }),
            Err(SecretsError::UnknownProvider(_))
        ));
    }
}
