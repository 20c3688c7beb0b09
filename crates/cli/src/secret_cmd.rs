//! `apiary secret …`: choose a secrets provider and manage the encrypted store (ToolHive's
//! `thv secret`). Values come in on standard input (never argv, where `ps` would show them) and go
//! out only through `get`.

use std::io::{BufRead, Read, Write};

use anyhow::{Context, bail};
use apiary_config::RunConfig;
use apiary_runtime::process::ProcessLauncher;
use apiary_runtime::secrets::sealed::KeyKind;
use apiary_runtime::secrets::{
    ENV_PREFIXES, MAX_VALUE_BYTES, PASSWORD_VARS, ProviderKind, SecretsDir, SecretsEnv, Setup, Zeroizing,
};
use apiary_runtime::state::StateDir;

use crate::output::Format;

/// `apiary secret`
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    apiary secret setup\n  \
    printf %s \"$GITHUB_TOKEN\" | apiary secret set github-token\n  \
    apiary run --secret github-token,target=GITHUB_PERSONAL_ACCESS_TOKEN npx://@modelcontextprotocol/server-github\n\n\
The encrypted store is <state dir>/secrets/secrets.enc (AES-256-GCM), keyed by the key file\n\
secrets.key beside it, or by a passphrase in APIARY_SECRETS_PASSWORD (or TOOLHIVE_SECRETS_PASSWORD)\n\
when that is set at setup. The environment provider reads APIARY_SECRET_<NAME> or\n\
TOOLHIVE_SECRET_<NAME> and cannot be written. APIARY_SECRETS_PROVIDER overrides the provider.")]
pub struct SecretArgs {
    #[command(subcommand)]
    command: SecretCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SecretCommand {
    /// Choose the secrets provider and make it ready (creates the encrypted store and its key)
    Setup(SetupArgs),
    /// Switch to another secrets provider (as setup --provider)
    Provider(ProviderArgs),
    /// Store a secret; its value is read from standard input (a prompt without echo on a terminal)
    Set(NameArg),
    /// Print a secret's value
    Get(NameArg),
    /// List the names of the stored secrets (never their values)
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Delete a secret
    #[command(visible_alias = "rm")]
    Delete(NameArg),
    /// Forget the encrypted store's key: deletes the key file and the store it encrypts, so that
    /// `setup` starts over (every stored secret is lost)
    ResetKeyring,
}

#[derive(Debug, clap::Args)]
struct SetupArgs {
    /// Where secrets are kept
    #[arg(long, value_enum, default_value_t = ProviderArg::Encrypted)]
    provider: ProviderArg,
}

#[derive(Debug, clap::Args)]
struct ProviderArgs {
    /// The provider
    #[arg(value_enum)]
    provider: ProviderArg,
}

#[derive(Debug, clap::Args)]
struct NameArg {
    /// The secret's name (letters, digits, '_', '.', '-')
    name: String,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ProviderArg {
    /// An AES-256-GCM file under the state directory
    Encrypted,
    /// APIARY_SECRET_<NAME> / TOOLHIVE_SECRET_<NAME> variables (read-only)
    Environment,
}

impl From<ProviderArg> for ProviderKind {
    fn from(p: ProviderArg) -> Self {
        match p {
            ProviderArg::Encrypted => ProviderKind::Encrypted,
            ProviderArg::Environment => ProviderKind::Environment,
        }
    }
}

/// The secrets directory of this installation's state directory.
pub fn secrets_dir() -> anyhow::Result<SecretsDir> {
    Ok(SecretsDir::in_state(&StateDir::from_env()?))
}

/// The launcher for `config`'s server with its `--secret`s resolved into the child's environment
/// (only there: not in the RunConfig, the record or any log), and without the variables that
/// unlock or hold secrets, which the server has no business seeing. Fails naming every secret
/// the provider lacks.
pub fn with_secrets(
    mut launcher: ProcessLauncher,
    state: &StateDir,
    config: &RunConfig,
) -> anyhow::Result<ProcessLauncher> {
    let env = SecretsEnv::from_process();
    for var in PASSWORD_VARS {
        launcher = launcher.env_remove(var);
    }
    for (name, _) in std::env::vars_os() {
        if let Some(name) = name.to_str()
            && ENV_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            launcher = launcher.env_remove(name);
        }
    }
    if config.secrets.is_empty() {
        return Ok(launcher);
    }
    let secrets = SecretsDir::in_state(state)
        .open(&env)
        .with_context(|| format!("reading the secrets of workload {:?}", config.name))?;
    for (target, value) in secrets.resolve(&config.secrets)? {
        launcher = launcher.env(target, value.as_str());
    }
    Ok(launcher)
}

/// `apiary secret …`.
pub fn secret(args: SecretArgs) -> anyhow::Result<()> {
    let dir = secrets_dir()?;
    let env = SecretsEnv::from_process();
    match args.command {
        SecretCommand::Setup(a) => setup(&dir, a.provider.into(), &env),
        SecretCommand::Provider(a) => setup(&dir, a.provider.into(), &env),
        SecretCommand::Set(a) => {
            let secrets = dir.open(&env)?;
            // Checked before asking, so a bad name does not cost the user a paste.
            apiary_runtime::secrets::check_name(&a.name)?;
            let value = read_value(&a.name)?;
            secrets.set(&a.name, &value)?;
            eprintln!("Secret {:?} stored", a.name);
            Ok(())
        }
        SecretCommand::Get(a) => {
            let secrets = dir.open(&env)?;
            let value = secrets
                .get(&a.name)?
                .with_context(|| format!("no secret named {:?} in the {} provider", a.name, secrets.kind()))?;
            let mut out = std::io::stdout().lock();
            out.write_all(value.as_bytes()).and_then(|()| out.write_all(b"\n")).context("writing the value")?;
            Ok(())
        }
        SecretCommand::List(a) => {
            let names = dir.open(&env)?.list()?;
            match a.format {
                Format::Json => crate::output::emit_line(&serde_json::to_string(&names)?),
                Format::Text if names.is_empty() => crate::output::emit_line("No secrets found"),
                Format::Text => crate::output::emit_line(names.join("\n").as_str()),
            }
            Ok(())
        }
        SecretCommand::Delete(a) => {
            dir.open(&env)?.delete(&a.name)?;
            eprintln!("Secret {:?} deleted", a.name);
            Ok(())
        }
        SecretCommand::ResetKeyring => {
            let removed = dir.reset_keyring()?;
            if removed.is_empty() {
                eprintln!("Nothing to reset: no key file or encrypted store in {}", dir.root().display());
            }
            for path in removed {
                eprintln!("Removed {}", path.display());
            }
            Ok(())
        }
    }
}

fn setup(dir: &SecretsDir, kind: ProviderKind, env: &SecretsEnv) -> anyhow::Result<()> {
    let how = |k: KeyKind| match k {
        KeyKind::KeyFile => format!("keyed by {}", dir.key_path().display()),
        KeyKind::Passphrase => "keyed by the passphrase in APIARY_SECRETS_PASSWORD".to_owned(),
    };
    match dir.setup(kind, env)? {
        Setup::Created(k) => {
            eprintln!("Created the encrypted secret store {} ({})", dir.store_path().display(), how(k))
        }
        Setup::Existing(k) => {
            eprintln!("Using the existing encrypted secret store {} ({})", dir.store_path().display(), how(k));
        }
        Setup::Environment => eprintln!("Secrets will be read from APIARY_SECRET_<NAME> / TOOLHIVE_SECRET_<NAME>"),
    }
    eprintln!("Secrets provider: {kind}");
    Ok(())
}

/// The value from standard input: all of it when piped (one trailing newline dropped), one line
/// typed without echo on a terminal.
fn read_value(name: &str) -> anyhow::Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    let mut text = Zeroizing::new(String::new());
    if rustix::termios::isatty(&stdin) {
        eprint!("Enter the value of secret {name:?}: ");
        let _echo_off = EchoOff::new(&stdin);
        stdin.lock().take(MAX_VALUE_BYTES as u64 + 2).read_line(&mut text).context("reading the value")?;
        eprintln!();
    } else {
        stdin.lock().take(MAX_VALUE_BYTES as u64 + 2).read_to_string(&mut text).context("reading the value")?;
    }
    let trimmed = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
    if trimmed.is_empty() {
        bail!("no value on standard input: pipe it in, e.g. printf %s \"$TOKEN\" | apiary secret set {name}");
    }
    Ok(Zeroizing::new(trimmed.to_owned()))
}

/// Turns the terminal's echo off until dropped.
struct EchoOff<'a> {
    fd: &'a std::io::Stdin,
    saved: Option<rustix::termios::Termios>,
}

impl<'a> EchoOff<'a> {
    fn new(fd: &'a std::io::Stdin) -> Self {
        let saved = rustix::termios::tcgetattr(fd).ok();
        if let Some(t) = &saved {
            let mut quiet = t.clone();
            quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
            let _ = rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &quiet);
        }
        EchoOff { fd, saved }
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = rustix::termios::tcsetattr(self.fd, rustix::termios::OptionalActions::Now, t);
        }
    }
}
