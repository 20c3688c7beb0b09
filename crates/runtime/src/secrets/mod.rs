//! Secrets for local servers (`apiary secret …`, `apiary run --secret NAME,target=ENV`), kept out
//! of RunConfigs, status records and logs: a RunConfig names a secret, and its value is read from
//! the configured provider only when a server process is started, straight into its environment.
//!
//! Two providers, as ToolHive's `encrypted` and `environment`:
//! - [`encrypted`]: one AES-256-GCM file, `<state>/secrets/secrets.enc` (0600, in a 0700
//!   directory), keyed by a random key in `secrets.key` beside it (0600, made by `setup`) or by a
//!   passphrase in `APIARY_SECRETS_PASSWORD` / `TOOLHIVE_SECRETS_PASSWORD` through Argon2id. This
//!   build has no OS keyring backend (headless Linux has none to use), so the key file stands in.
//! - [`environment`]: read-only, `APIARY_SECRET_<NAME>` or `TOOLHIVE_SECRET_<NAME>`.
//!
//! `<state>/secrets/provider` records which one `setup` chose; `APIARY_SECRETS_PROVIDER` (or
//! `TOOLHIVE_SECRETS_PROVIDER`) overrides it for one command.

pub mod encrypted;
pub mod environment;
pub mod sealed;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use apiary_config::{MAX_ARG_BYTES, SecretRef, is_secret_name};
pub use zeroize::Zeroizing;

pub use encrypted::EncryptedStore;
pub use environment::{ENV_PREFIXES, EnvironmentProvider};

use crate::state::{StateDir, StateError};

/// Passphrase variables, in order of precedence.
pub const PASSWORD_VARS: [&str; 2] = ["APIARY_SECRETS_PASSWORD", "TOOLHIVE_SECRETS_PASSWORD"];
/// Provider override variables, in order of precedence.
pub const PROVIDER_VARS: [&str; 2] = ["APIARY_SECRETS_PROVIDER", "TOOLHIVE_SECRETS_PROVIDER"];
/// Largest secret value: what one environment string may hold on Linux.
pub const MAX_VALUE_BYTES: usize = MAX_ARG_BYTES;

/// Something went wrong with secrets. No variant ever carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// No provider has been chosen yet.
    #[error("no secrets provider is set up: run `apiary secret setup` (or set APIARY_SECRETS_PROVIDER)")]
    NotSetUp,
    /// The provider name is not one we know.
    #[error("unknown secrets provider {0:?}: use encrypted or environment")]
    UnknownProvider(String),
    /// The encrypted store does not exist.
    #[error("the encrypted secret store {} does not exist: run `apiary secret setup`", .0.display())]
    StoreMissing(PathBuf),
    /// The store is keyed by the key file, and it is gone.
    #[error(
        "the secret store's key file {} is missing: restore it, or start over with `apiary secret reset-keyring` then `apiary secret setup`",
        .0.display()
    )]
    KeyFileMissing(PathBuf),
    /// The key file is readable or writable by others.
    #[error("the secret store's key file {} has mode {mode:o}, open to other users: chmod 600 it", path.display())]
    KeyFileMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file holds no key.
    #[error("the secret store's key file {} does not hold a key (64 hex digits)", .0.display())]
    KeyFileCorrupt(PathBuf),
    /// The store is keyed by a passphrase that is not in the environment.
    #[error("the secret store {} is protected by a passphrase: set APIARY_SECRETS_PASSWORD (or TOOLHIVE_SECRETS_PASSWORD)", .0.display())]
    PasswordMissing(PathBuf),
    /// The store is not in our format, or its content is not a secrets map.
    #[error("the secret store {} is corrupted: {why}", path.display())]
    Corrupt {
        /// The store.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Decryption failed.
    #[error("cannot decrypt the secret store {}: {hint}", path.display())]
    WrongKey {
        /// The store.
        path: PathBuf,
        /// Which key was tried.
        hint: &'static str,
    },
    /// The name cannot be a secret name.
    #[error(
        "{0:?} is not a secret name: use 1–128 characters from A-Z, a-z, 0-9, '_', '.', '-', not starting with '.' or '-'"
    )]
    InvalidName(String),
    /// The value cannot be a secret value.
    #[error("the secret's value {0}")]
    InvalidValue(&'static str),
    /// The provider cannot be written to.
    #[error("the {0} secrets provider is read-only")]
    ReadOnly(ProviderKind),
    /// No secret by that name.
    #[error("no secret named {name:?} in the {provider} provider")]
    NotFound {
        /// The name asked for.
        name: String,
        /// The provider searched.
        provider: ProviderKind,
    },
    /// Secrets a server needs that the provider does not have.
    #[error("{} not found in the {provider} secrets provider: {}", if names.len() == 1 { "secret" } else { "secrets" }, names.join(", "))]
    Missing {
        /// The missing names.
        names: Vec<String>,
        /// The provider searched.
        provider: ProviderKind,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Randomness or key derivation failed.
    #[error(transparent)]
    Seal(#[from] sealed::SealError),
    /// Writing through the state directory failed.
    #[error(transparent)]
    State(#[from] StateError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SecretsError + '_ {
    move |source| SecretsError::Io { path: path.to_path_buf(), source }
}

/// Which provider holds the secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// The encrypted file.
    Encrypted,
    /// `APIARY_SECRET_*` / `TOOLHIVE_SECRET_*` variables (read-only).
    Environment,
}

impl ProviderKind {
    /// The word used on the command line and in the provider file.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Encrypted => "encrypted",
            ProviderKind::Environment => "environment",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = SecretsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "encrypted" => Ok(ProviderKind::Encrypted),
            "environment" => Ok(ProviderKind::Environment),
            other => Err(SecretsError::UnknownProvider(other.to_owned())),
        }
    }
}

/// What the secrets commands read from the environment: a provider override, a passphrase, and
/// the environment provider's variables.
#[derive(Default)]
pub struct SecretsEnv {
    /// `APIARY_SECRETS_PROVIDER` / `TOOLHIVE_SECRETS_PROVIDER`.
    pub provider: Option<String>,
    /// `APIARY_SECRETS_PASSWORD` / `TOOLHIVE_SECRETS_PASSWORD`.
    pub password: Option<Zeroizing<String>>,
    /// `APIARY_SECRET_*` / `TOOLHIVE_SECRET_*`.
    pub environment: EnvironmentProvider,
}

impl fmt::Debug for SecretsEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretsEnv")
            .field("provider", &self.provider)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("environment", &self.environment)
            .finish()
    }
}

impl SecretsEnv {
    /// Reads this process's environment (empty values count as unset).
    pub fn from_process() -> Self {
        let first = |vars: &[&str]| vars.iter().find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()));
        SecretsEnv {
            provider: first(&PROVIDER_VARS),
            password: first(&PASSWORD_VARS).map(Zeroizing::new),
            environment: EnvironmentProvider::from_process(),
        }
    }
}

/// Checks a secret name.
pub fn check_name(name: &str) -> Result<(), SecretsError> {
    if is_secret_name(name) { Ok(()) } else { Err(SecretsError::InvalidName(name.to_owned())) }
}

/// `<state>/secrets`: the provider choice, the encrypted store and its key file.
#[derive(Debug, Clone)]
pub struct SecretsDir {
    root: PathBuf,
}

impl SecretsDir {
    /// The secrets directory of a state directory.
    pub fn in_state(state: &StateDir) -> Self {
        SecretsDir { root: state.root().join("secrets") }
    }

    /// A secrets directory at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        SecretsDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The encrypted store.
    pub fn store_path(&self) -> PathBuf {
        self.root.join("secrets.enc")
    }

    /// The store's key file.
    pub fn key_path(&self) -> PathBuf {
        self.root.join("secrets.key")
    }

    /// The file naming the chosen provider.
    pub fn provider_path(&self) -> PathBuf {
        self.root.join("provider")
    }

    fn lock_path(&self) -> PathBuf {
        self.root.join(".lock")
    }

    /// Creates the directory (0700).
    pub fn ensure(&self) -> Result<(), SecretsError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.root).map_err(io_err(&self.root))
    }

    /// Holds an exclusive lock on the directory while the guard lives, so that two commands
    /// changing the store one after the other never lose each other's change.
    pub fn lock(&self) -> Result<DirLock, SecretsError> {
        self.ensure()?;
        let path = self.lock_path();
        let file =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| SecretsError::Io { path: path.clone(), source: e.into() })?;
        Ok(DirLock { _file: file })
    }

    /// The provider `setup` chose, if any.
    pub fn configured_provider(&self) -> Result<Option<ProviderKind>, SecretsError> {
        let path = self.provider_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => text.parse().map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The provider in force: the environment's override, else the configured one.
    pub fn provider(&self, env: &SecretsEnv) -> Result<ProviderKind, SecretsError> {
        match &env.provider {
            Some(p) => p.parse(),
            None => self.configured_provider()?.ok_or(SecretsError::NotSetUp),
        }
    }

    /// Chooses `kind` and makes it ready: for `encrypted`, creates the store (keyed by the
    /// passphrase when `env` has one, else by a new key file) or, when it exists, checks that it
    /// opens. Returns how the store is keyed.
    pub fn setup(&self, kind: ProviderKind, env: &SecretsEnv) -> Result<Setup, SecretsError> {
        let _lock = self.lock()?;
        let outcome = match kind {
            ProviderKind::Environment => Setup::Environment,
            ProviderKind::Encrypted => {
                EncryptedStore::create_or_open(self, env.password.as_deref().map(String::as_str))?
            }
        };
        crate::state::write_atomic(&self.provider_path(), format!("{kind}\n").as_bytes())?;
        Ok(outcome)
    }

    /// Opens the provider in force.
    pub fn open(&self, env: &SecretsEnv) -> Result<Secrets, SecretsError> {
        Ok(match self.provider(env)? {
            ProviderKind::Encrypted => {
                Secrets::Encrypted(EncryptedStore::open(self, env.password.as_deref().map(String::as_str))?)
            }
            ProviderKind::Environment => Secrets::Environment(env.environment.clone()),
        })
    }

    /// Removes the key file and the store it encrypts (which nothing could read without it).
    /// Returns the paths removed.
    pub fn reset_keyring(&self) -> Result<Vec<PathBuf>, SecretsError> {
        let _lock = self.lock()?;
        let mut removed = Vec::new();
        for path in [self.key_path(), self.store_path()] {
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(removed)
    }
}

/// The lock [`SecretsDir::lock`] holds; released when dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

/// How `setup` left things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// A new encrypted store was created, keyed as given.
    Created(sealed::KeyKind),
    /// The encrypted store existed and opened with its key.
    Existing(sealed::KeyKind),
    /// The environment provider needs nothing set up.
    Environment,
}

/// An open provider.
#[derive(Debug)]
pub enum Secrets {
    /// The encrypted store.
    Encrypted(EncryptedStore),
    /// The environment.
    Environment(EnvironmentProvider),
}

impl Secrets {
    /// Which provider this is.
    pub fn kind(&self) -> ProviderKind {
        match self {
            Secrets::Encrypted(_) => ProviderKind::Encrypted,
            Secrets::Environment(_) => ProviderKind::Environment,
        }
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Result<Option<Zeroizing<String>>, SecretsError> {
        check_name(name)?;
        match self {
            Secrets::Encrypted(s) => s.get(name),
            Secrets::Environment(e) => Ok(e.get(name).map(Zeroizing::new)),
        }
    }

    /// Every secret's name, sorted.
    pub fn list(&self) -> Result<Vec<String>, SecretsError> {
        match self {
            Secrets::Encrypted(s) => s.list(),
            Secrets::Environment(e) => Ok(e.list()),
        }
    }

    /// Stores `value` under `name`, replacing any earlier value.
    pub fn set(&self, name: &str, value: &str) -> Result<(), SecretsError> {
        check_name(name)?;
        if value.is_empty() {
            return Err(SecretsError::InvalidValue("is empty"));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(SecretsError::InvalidValue("is longer than 131072 bytes"));
        }
        if value.contains('\0') {
            return Err(SecretsError::InvalidValue("contains a NUL character, which no environment variable can hold"));
        }
        match self {
            Secrets::Encrypted(s) => s.set(name, value),
            Secrets::Environment(_) => Err(SecretsError::ReadOnly(ProviderKind::Environment)),
        }
    }

    /// Removes `name`; an absent name is an error.
    pub fn delete(&self, name: &str) -> Result<(), SecretsError> {
        check_name(name)?;
        let found = match self {
            Secrets::Encrypted(s) => s.delete(name)?,
            Secrets::Environment(_) => return Err(SecretsError::ReadOnly(ProviderKind::Environment)),
        };
        if found { Ok(()) } else { Err(SecretsError::NotFound { name: name.to_owned(), provider: self.kind() }) }
    }

    /// The `(target variable, value)` pairs for a server's `--secret`s; every missing name is
    /// reported at once.
    pub fn resolve(&self, refs: &[SecretRef]) -> Result<Vec<(String, Zeroizing<String>)>, SecretsError> {
        let mut out = Vec::with_capacity(refs.len());
        let mut missing = Vec::new();
        for r in refs {
            match self.get(&r.name)? {
                Some(v) => out.push((r.target.clone(), v)),
                None => missing.push(r.name.clone()),
            }
        }
        if missing.is_empty() { Ok(out) } else { Err(SecretsError::Missing { names: missing, provider: self.kind() }) }
    }
}
