//! A real Keycloak for OIDC tests: token issuing, RFC 8693 token exchange and Keycloak's own
//! refusals, with the realm `mcp` from `fixtures/keycloak/mcp-realm.json`.
//!
//! `cargo xtask test-env` installs a primed Keycloak (`KEYCLOAK_HOME`, `KEYCLOAK_JAVA_HOME` in
//! `tools.env`). [`Keycloak::start`] copies that home into a fresh temporary directory (Keycloak
//! writes into its home, so instances never share one), imports the realm, starts
//! `kc.sh start-dev --db=dev-mem` on a free loopback port and waits for the realm's discovery
//! document (~10 s on 2 idle cores, more under load). Nothing persists: keys, sessions and users are new each start.
//!
//! Stopping: dropping a [`Keycloak`] sends SIGTERM to its process group (`timeout`, `kc.sh`,
//! `java`), waits, then SIGKILLs, and removes the directory. If the test process dies instead,
//! the child gets SIGTERM from the kernel: it is started through `setpriv --pdeathsig TERM`
//! (util-linux), because setting the parent-death signal ourselves needs `pre_exec`, which is
//! `unsafe` (denied in this workspace). That signal fires when the *thread* that spawned the
//! child ends, so every start spawns from one process-wide thread that lives until exit (tokio's
//! blocking threads come and go). `timeout --kill-after=10s 30m` is the last backstop: no
//! instance outlives 30 minutes. A directory left by a killed process is removed by the next
//! start in any process.
//!
//! [`Keycloak::start_pinned`] serves HTTPS on the fixed 127.0.0.1:8443 with the issuer pinned to
//! [`PINNED_ISSUER`], the issuer the test cluster's apiserver trusts (`cargo xtask cluster up`;
//! see `kube_oidc`). Because the port is fixed, at most one such instance runs on the machine:
//! starts are serialised by an exclusive `flock` on `$TMPDIR/apiary-keycloak-8443.lock`, held
//! until the instance is dropped (a waiting start gives up after 15 minutes).
//!
//! See `docs/oidc-harness.md` for the recipe, the realm and Keycloak's error answers.

use crate::daemon::{free_port, spawn_from_long_lived_thread, stop_group, which};
use crate::env;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::Value;
use std::io::{self, Write as _};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The realm imported at every start (test-only secrets).
pub const REALM_JSON: &str = include_str!("../fixtures/keycloak/mcp-realm.json");
/// The realm's name, the last segment of the issuer.
pub const REALM: &str = "mcp";
/// The public client users log in with (password grant allowed for tests).
pub const USER_CLIENT: &str = "mcp-client";
/// The confidential client that exchanges user tokens.
pub const GATEWAY_CLIENT: &str = "mcp-gateway";
pub const GATEWAY_SECRET: &str = "mcp-gateway-test-secret";
/// The backend audience; its client roles are the 22 kubernetes-mcp-server tool names.
pub const BACKEND_AUDIENCE: &str = "mcp-test/kubernetes-mcp";
pub const BACKEND_SECRET: &str = "kubernetes-mcp-test-secret";
/// The issuer of [`Keycloak::start_pinned`]: fixed, so a long-running apiserver can trust it.
pub const PINNED_ISSUER: &str = "https://127.0.0.1:8443/realms/mcp";
/// The HTTPS port of [`Keycloak::start_pinned`] on 127.0.0.1.
pub const PINNED_PORT: u16 = 8443;
/// The temporary master-realm admin created at start.
pub const ADMIN_USERNAME: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-test-pw";

/// How long a start may take until discovery answers. Primed and alone on 2 cores it takes
/// 10–12 s, but two instances beside other builds (load 10) took 77 s.
const READY_LIMIT: Duration = Duration::from_secs(180);
/// How long a stopping Keycloak gets after SIGTERM (it takes 1–2 s) before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// One HTTP request to Keycloak (a password grant hashes, ~60 ms).
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval while waiting for readiness or exit.
const POLL: Duration = Duration::from_millis(250);
/// Log lines quoted in errors.
const LOG_TAIL_LINES: usize = 40;
/// The upper bound on any instance's life, enforced by `timeout`.
const LIFETIME: &str = "30m";
/// File augmentation writes; without it a start would re-augment (+17 s) in every copy.
const PRIMED_FILE: &str = "lib/quarkus/build-system.properties";
const FIX: &str = "run `cargo xtask test-env`";
/// How long a pinned start waits for another pinned instance (one per machine) to go.
const PIN_WAIT: Duration = Duration::from_secs(15 * 60);
/// How long a pinned start waits for port 8443 to be free once it holds the lock (an instance
/// whose test process died is still stopping).
const PORT_WAIT: Duration = Duration::from_secs(30);

/// Why Keycloak could not be started or asked. `Debug` prints the message, so a test's
/// `unwrap()` shows the fix (`cargo xtask test-env`) and the log tail readably.
#[derive(thiserror::Error)]
pub enum KeycloakError {
    #[error("Keycloak is not installed for tests: {reason}; {FIX}")]
    NotInstalled { reason: String },
    #[error("cannot prepare a Keycloak copy ({step}): {source}")]
    Prepare { step: String, source: io::Error },
    #[error("cannot start Keycloak: {0}")]
    Spawn(io::Error),
    #[error("Keycloak {what}; the end of {log}:\n{tail}")]
    NotReady { what: String, log: PathBuf, tail: String },
    #[error("request to Keycloak ({url}) failed: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("Keycloak ({url}) answered HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("not a JWT with a JSON payload: {0}")]
    NotAJwt(String),
    #[error("Keycloak's TLS material is missing: {path}: {reason}; run `cargo xtask cluster up` (it makes the pair)")]
    MissingTls { path: PathBuf, reason: String },
    #[error("the pinned Keycloak (127.0.0.1:{PINNED_PORT}) is not available: {0}")]
    PinBusy(String),
}

impl std::fmt::Debug for KeycloakError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A refused or failed token exchange.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeRefused {
    /// Keycloak answered with an OAuth error (`error`, `error_description`).
    #[error("Keycloak refused the exchange: HTTP {status} {error}: {description}")]
    Refused { status: u16, error: String, description: String },
    /// The request did not get an OAuth answer at all.
    #[error(transparent)]
    Failed(#[from] KeycloakError),
}

impl ExchangeRefused {
    /// Keycloak's `error_description`, if it refused.
    pub fn description(&self) -> Option<&str> {
        match self {
            Self::Refused { description, .. } => Some(description),
            Self::Failed(_) => None,
        }
    }
}

/// A token endpoint's success answer. `Debug` leaves the tokens out.
#[derive(Clone, Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub refresh_expires_in: Option<u64>,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub issued_token_type: Option<String>,
}

impl TokenSet {
    /// The access token's claims, unverified.
    pub fn claims(&self) -> Result<Value, KeycloakError> {
        decode_claims(&self.access_token)
    }
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "<redacted>"))
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .field("scope", &self.scope)
            .field("issued_token_type", &self.issued_token_type)
            .finish_non_exhaustive()
    }
}

/// The claims of a JWT, **without verifying anything** (a test helper for looking inside
/// tokens Keycloak just issued).
pub fn decode_claims(jwt: &str) -> Result<Value, KeycloakError> {
    let mut parts = jwt.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(KeycloakError::NotAJwt("expected three dot-separated parts".to_owned()));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|err| KeycloakError::NotAJwt(format!("payload is not base64url: {err}")))?;
    serde_json::from_slice(&bytes).map_err(|err| KeycloakError::NotAJwt(format!("payload is not JSON: {err}")))
}

/// The serving certificate and key of [`Keycloak::start_pinned`] (SAN `IP:127.0.0.1`), and the
/// CA that signed them, which its clients trust.
#[derive(Debug, Clone)]
pub struct PinnedTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A running Keycloak with the realm `mcp`, stopped and removed on drop.
#[derive(Debug)]
pub struct Keycloak {
    /// The HTTP port on 127.0.0.1.
    port: u16,
    /// `http://127.0.0.1:<port>`, or `https://127.0.0.1:8443` when pinned: the issuer's base.
    base: String,
    /// The CA (PEM) the client trusts for a pinned instance.
    ca_pem: Option<Vec<u8>>,
    /// The machine-wide lock of a pinned instance; released after the instance stops (fields
    /// drop after `Drop::drop`).
    _pin: Option<std::fs::File>,
    /// The `setpriv`/`timeout` wrapper: its pid is the process group's id.
    child: Child,
    /// The per-instance directory (`kc/` home copy, `keycloak.log`, `tmp/`).
    workdir: PathBuf,
}

impl Keycloak {
    /// Starts a fresh Keycloak (a copy of the primed install) and waits until the realm's
    /// discovery document answers, at most 180 s. The copying and spawning run in
    /// `spawn_blocking`; call it from a tokio runtime.
    ///
    /// Fails with [`KeycloakError::NotInstalled`] (naming `cargo xtask test-env`) when the
    /// install is missing, and with the log's tail when Keycloak exits or is not ready in time.
    pub async fn start() -> Result<Self, KeycloakError> {
        let install = Install::locate()?;
        let launched = tokio::task::spawn_blocking(move || launch(&install, None))
            .await
            .map_err(|err| KeycloakError::Spawn(io::Error::other(err.to_string())))??;
        // Owned from here on, so a failed wait still stops and removes it.
        let mut keycloak = launched;
        keycloak.wait_ready().await?;
        Ok(keycloak)
    }

    /// Starts a Keycloak that also serves HTTPS on 127.0.0.1:8443 with `tls`, its hostname
    /// pinned so every token says `iss: https://127.0.0.1:8443/realms/mcp` ([`PINNED_ISSUER`]),
    /// whichever URL served it. All its URLs ([`Keycloak::issuer`], the token endpoint) are the
    /// HTTPS ones, and its client trusts `tls.ca`. First waits (at most 15 minutes) for the
    /// machine-wide lock: one pinned instance at a time. Fails, never skips, when Keycloak or a
    /// file of `tls` is missing.
    pub async fn start_pinned(tls: &PinnedTls) -> Result<Self, KeycloakError> {
        let install = Install::locate()?;
        for path in [&tls.cert, &tls.key, &tls.ca] {
            if let Err(err) = std::fs::metadata(path) {
                return Err(KeycloakError::MissingTls { path: path.clone(), reason: err.to_string() });
            }
        }
        let ca_pem = std::fs::read(&tls.ca)
            .map_err(|err| KeycloakError::MissingTls { path: tls.ca.clone(), reason: err.to_string() })?;
        reqwest::Certificate::from_pem(&ca_pem).map_err(|err| KeycloakError::MissingTls {
            path: tls.ca.clone(),
            reason: format!("not a PEM certificate: {err}"),
        })?;
        let tls = tls.clone();
        let launched = tokio::task::spawn_blocking(move || {
            let pin = pin_lock()?;
            let mut keycloak = launch(&install, Some(&tls))?;
            keycloak.ca_pem = Some(ca_pem);
            keycloak._pin = Some(pin);
            Ok::<_, KeycloakError>(keycloak)
        })
        .await
        .map_err(|err| KeycloakError::Spawn(io::Error::other(err.to_string())))??;
        let mut keycloak = launched;
        keycloak.wait_ready().await?;
        Ok(keycloak)
    }

    /// One Keycloak per test process, started by the first caller (the others wait for it).
    /// Saves ~10 s per test; the price is shared state: users' sessions and tokens accumulate,
    /// so tests must not log users out, change the realm or count sessions. It is never
    /// dropped: at exit the parent-death signal stops it, and the next start in any process
    /// removes its directory. A process running longer than 30 minutes loses it (`timeout`).
    ///
    /// # Panics
    /// If it cannot start (every caller gets the same message, e.g. the install is missing).
    pub async fn shared() -> &'static Keycloak {
        static SHARED: tokio::sync::OnceCell<Result<Keycloak, String>> = tokio::sync::OnceCell::const_new();
        let started = SHARED.get_or_init(|| async { Keycloak::start().await.map_err(|err| err.to_string()) }).await;
        match started {
            Ok(keycloak) => keycloak,
            Err(err) => panic!("the shared Keycloak did not start: {err}"),
        }
    }

    /// `http://127.0.0.1:<port>/realms/mcp`, or [`PINNED_ISSUER`] for a pinned instance. Always
    /// the IP: Keycloak derives `iss` from the request's Host, so mixing in `localhost` would
    /// give tokens two different issuers.
    pub fn issuer(&self) -> String {
        format!("{}/realms/{REALM}", self.base)
    }

    /// The realm's discovery document URL.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer())
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/protocol/openid-connect/token", self.issuer())
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/protocol/openid-connect/certs", self.issuer())
    }

    pub fn introspection_endpoint(&self) -> String {
        format!("{}/protocol/openid-connect/token/introspect", self.issuer())
    }

    /// The realm's authorization endpoint (auth code flows).
    pub fn authorization_endpoint(&self) -> String {
        format!("{}/protocol/openid-connect/auth", self.issuer())
    }

    /// The realm's RFC 7591 registration endpoint, as its discovery document names it.
    pub fn registration_endpoint(&self) -> String {
        format!("{}/clients-registrations/openid-connect", self.issuer())
    }

    /// The HTTP port on 127.0.0.1 (a pinned instance serves its HTTPS on [`PINNED_PORT`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Keycloak's combined stdout and stderr.
    pub fn log_path(&self) -> PathBuf {
        self.workdir.join("keycloak.log")
    }

    /// A password grant (`grant_type=password`), e.g. `("mcp-client", "mcp", "mcp", "openid")`.
    pub async fn password_token(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
        scope: &str,
    ) -> Result<TokenSet, KeycloakError> {
        let form = [
            ("grant_type", "password"),
            ("client_id", client_id),
            ("username", username),
            ("password", password),
            ("scope", scope),
        ];
        let url = self.token_endpoint();
        let response = send(self.http()?.post(&url).form(&form), &url).await?;
        let status = response.status();
        let body = read_body(response, &url).await?;
        if !status.is_success() {
            return Err(KeycloakError::Status { url, status: status.as_u16(), body });
        }
        serde_json::from_str(&body).map_err(|err| KeycloakError::Status {
            url,
            status: status.as_u16(),
            body: format!("not a token set: {err}"),
        })
    }

    /// A standard token exchange (RFC 8693) by a confidential client authenticating with HTTP
    /// Basic, of an access token. An empty `audience` or `scope` leaves that parameter out.
    pub async fn exchange(
        &self,
        client_id: &str,
        client_secret: &str,
        subject_token: &str,
        audience: &str,
        scope: &str,
    ) -> Result<TokenSet, ExchangeRefused> {
        let mut form = vec![
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", subject_token),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ];
        if !audience.is_empty() {
            form.push(("audience", audience));
        }
        if !scope.is_empty() {
            form.push(("scope", scope));
        }
        let url = self.token_endpoint();
        let request = self.http()?.post(&url).basic_auth(client_id, Some(client_secret)).form(&form);
        let response = send(request, &url).await?;
        let status = response.status();
        let body = read_body(response, &url).await?;
        if status.is_success() {
            return serde_json::from_str(&body).map_err(|err| {
                KeycloakError::Status { url, status: status.as_u16(), body: format!("not a token set: {err}") }.into()
            });
        }
        let refusal: Value = serde_json::from_str(&body).map_err(|_| KeycloakError::Status {
            url: url.clone(),
            status: status.as_u16(),
            body: body.clone(),
        })?;
        let field = |key: &str| refusal.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        Err(ExchangeRefused::Refused {
            status: status.as_u16(),
            error: field("error"),
            description: field("error_description"),
        })
    }

    /// Polls discovery until it names our issuer, failing early if Keycloak exits.
    async fn wait_ready(&mut self) -> Result<(), KeycloakError> {
        let started = Instant::now();
        let client = self.http()?;
        let url = self.discovery_url();
        let issuer = self.issuer();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.not_ready(format!("exited ({status}) before its realm answered")));
            }
            if let Ok(response) = client.get(&url).timeout(Duration::from_secs(2)).send().await
                && response.status().is_success()
                && let Ok(document) = response.json::<Value>().await
                && document.get("issuer").and_then(Value::as_str) == Some(issuer.as_str())
            {
                return Ok(());
            }
            if started.elapsed() > READY_LIMIT {
                return Err(self.not_ready(format!("did not serve {url} within {}s", READY_LIMIT.as_secs())));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A client for this instance: [`http`], trusting only the pinned CA when there is one.
    pub fn http(&self) -> Result<reqwest::Client, KeycloakError> {
        let Some(pem) = &self.ca_pem else {
            return http();
        };
        let building = |source| KeycloakError::Http { url: "(building the client)".to_owned(), source };
        let ca = reqwest::Certificate::from_pem(pem).map_err(building)?;
        client_builder().tls_certs_only([ca]).build().map_err(building)
    }

    fn not_ready(&self, what: String) -> KeycloakError {
        let log = self.log_path();
        KeycloakError::NotReady { what, tail: tail(&log, LOG_TAIL_LINES), log }
    }
}

impl Drop for Keycloak {
    fn drop(&mut self) {
        stop_group(&mut self.child, STOP_GRACE);
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

/// The primed install `cargo xtask test-env` recorded.
struct Install {
    home: PathBuf,
    java_home: PathBuf,
}

impl Install {
    fn locate() -> Result<Self, KeycloakError> {
        let missing = |reason: String| KeycloakError::NotInstalled { reason };
        let bin = env::locate_tools_bin(|key| std::env::var_os(key))
            .ok_or_else(|| missing(format!("neither {} nor HOME is set", env::TOOLS_BIN_VAR)))?;
        let tools_env = bin.join(env::TOOLS_ENV_FILE);
        let text =
            std::fs::read_to_string(&tools_env).map_err(|err| missing(format!("{}: {err}", tools_env.display())))?;
        let setting = |key: &str| {
            env::parse_setting(&text, key)
                .map(PathBuf::from)
                .ok_or_else(|| missing(format!("{key} is not in {}", tools_env.display())))
        };
        let install = Self { home: setting("KEYCLOAK_HOME")?, java_home: setting("KEYCLOAK_JAVA_HOME")? };
        for path in [install.home.join("bin/kc.sh"), install.home.join(PRIMED_FILE), install.java_home.join("bin/java")]
        {
            if !path.is_file() {
                return Err(missing(format!("{} does not exist", path.display())));
            }
        }
        Ok(install)
    }
}

/// Takes the machine-wide lock of the pinned port (polling, bounded), notes our pid in it for
/// whoever waits, and waits until nothing listens on 127.0.0.1:8443 any more.
fn pin_lock() -> Result<std::fs::File, KeycloakError> {
    let path = std::env::temp_dir().join(format!("apiary-keycloak-{PINNED_PORT}.lock"));
    let busy = |what: String| KeycloakError::PinBusy(what);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|err| busy(format!("open {}: {err}", path.display())))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < PIN_WAIT => std::thread::sleep(POLL),
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(busy(format!(
                    "{} is still held after {} s (by pid {})",
                    path.display(),
                    PIN_WAIT.as_secs(),
                    holder.trim()
                )));
            }
            Err(std::fs::TryLockError::Error(err)) => return Err(busy(format!("lock {}: {err}", path.display()))),
        }
    }
    // Diagnostics only: a failed write does not matter.
    let _ = file.set_len(0).and_then(|()| write!(file, "{}", std::process::id()));
    let started = Instant::now();
    while std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, PINNED_PORT)).is_err() {
        if started.elapsed() > PORT_WAIT {
            return Err(busy(format!("something that does not take {} listens on the port", path.display())));
        }
        std::thread::sleep(POLL);
    }
    Ok(file)
}

/// Copies the home, imports the realm and spawns Keycloak; returns before it is ready. With
/// `pinned`, it also serves HTTPS on [`PINNED_PORT`] with its hostname pinned to that URL.
fn launch(install: &Install, pinned: Option<&PinnedTls>) -> Result<Keycloak, KeycloakError> {
    let root = std::env::temp_dir().join("apiary-keycloak");
    remove_stale(&root);
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let workdir = root.join(format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let prepared = prepare(install, &workdir, pinned);
    let spawned = prepared.and_then(|(port, cmd)| {
        spawn_from_long_lived_thread(cmd).map(|child| (port, child)).map_err(KeycloakError::Spawn)
    });
    match spawned {
        Ok((port, child)) => {
            let base = match pinned {
                Some(_) => format!("https://127.0.0.1:{PINNED_PORT}"),
                None => format!("http://127.0.0.1:{port}"),
            };
            Ok(Keycloak { port, base, ca_pem: None, _pin: None, child, workdir })
        }
        Err(err) => {
            let _ = std::fs::remove_dir_all(&workdir);
            Err(err)
        }
    }
}

/// Fills `workdir` and builds the command; returns the HTTP port it will listen on.
fn prepare(install: &Install, workdir: &Path, pinned: Option<&PinnedTls>) -> Result<(u16, Command), KeycloakError> {
    let step = |step: &str| {
        let step = step.to_owned();
        move |source| KeycloakError::Prepare { step, source }
    };
    let home = workdir.join("kc");
    let import = home.join("data").join("import");
    let tmp = workdir.join("tmp");
    std::fs::create_dir_all(workdir).map_err(step("create the directory"))?;
    // `cp -a` keeps modes and symlinks and is fast (0.2 s for 188 MB from the page cache).
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&install.home)
        .arg(&home)
        .stdin(Stdio::null())
        .output()
        .map_err(step("run cp -a"))?;
    if !copied.status.success() {
        let message = format!("cp -a {}: {}", install.home.display(), String::from_utf8_lossy(&copied.stderr).trim());
        return Err(KeycloakError::Prepare { step: "copy the home".to_owned(), source: io::Error::other(message) });
    }
    std::fs::create_dir_all(&import).map_err(step("create data/import"))?;
    std::fs::write(import.join("mcp-realm.json"), REALM_JSON).map_err(step("write the realm"))?;
    std::fs::create_dir_all(&tmp).map_err(step("create tmp"))?;
    let log = std::fs::File::create(workdir.join("keycloak.log")).map_err(step("create the log"))?;
    let log_err = log.try_clone().map_err(step("clone the log handle"))?;
    let port = free_port().map_err(step("find a free port"))?;

    let mut cmd = match which("setpriv") {
        Some(setpriv) => {
            let mut cmd = Command::new(setpriv);
            cmd.args(["--pdeathsig", "TERM", "--", "timeout"]);
            cmd
        }
        // Without util-linux only `timeout` bounds an orphaned instance.
        None => Command::new("timeout"),
    };
    cmd.args(["--kill-after=10s", LIFETIME]).arg(home.join("bin").join("kc.sh")).args([
        "start-dev",
        "--http-host=127.0.0.1",
        &format!("--http-port={port}"),
        "--hostname-strict=false",
        "--import-realm",
        // A build-time option: it must match the priming in xtask, or every start
        // re-augments (+17 s).
        "--db=dev-mem",
    ]);
    if let Some(tls) = pinned {
        // `--http-host` binds the HTTPS listener to 127.0.0.1 too; `--hostname` pins `iss`.
        cmd.arg(format!("--https-port={PINNED_PORT}"))
            .arg(format!("--https-certificate-file={}", tls.cert.display()))
            .arg(format!("--https-certificate-key-file={}", tls.key.display()))
            .arg(format!("--hostname=https://127.0.0.1:{PINNED_PORT}"));
    }
    cmd.env("JAVA_HOME", &install.java_home)
        .env("KC_BOOTSTRAP_ADMIN_USERNAME", ADMIN_USERNAME)
        .env("KC_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("JAVA_OPTS_KC_HEAP", "-Xms64m -Xmx256m")
        // Keeps Vert.x's scratch directories in the instance's own directory.
        .env("JAVA_OPTS_APPEND", format!("-Djava.io.tmpdir={}", tmp.display()))
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // Its own group, so one signal reaches `timeout`, `kc.sh` and `java`.
        .process_group(0);
    Ok((port, cmd))
}

/// Removes instance directories whose process no longer exists (killed before its drop ran,
/// or the shared instance of a finished test binary).
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The last `lines` lines of a file, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|err| format!("(cannot read: {err})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A client without a connection pool: the shared instance outlives each test's runtime, and
/// pooled connections would die with it. Proxies are ignored: Keycloak is on loopback.
/// Plays the browser's part of an authorization-code login: GETs `authorize_url` (Keycloak's
/// login form), posts `username`/`password` to the form's `action` with the session cookies,
/// and returns the `Location` Keycloak redirects to (the client's redirect URI with `code` and
/// `state`, or with `error`), without following it. Redirects are never followed, so the
/// caller decides whether to deliver the callback.
pub async fn browser_login(authorize_url: &str, username: &str, password: &str) -> Result<String, KeycloakError> {
    let client = reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|source| KeycloakError::Http { url: "(building the client)".to_owned(), source })?;
    let page = send(client.get(authorize_url), authorize_url).await?;
    let status = page.status().as_u16();
    // Cookies by hand (name=value of each Set-Cookie): the login form's action needs them.
    let cookies: Vec<String> = page
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter(|pair| pair.contains('=') && !pair.ends_with('='))
        .map(str::to_owned)
        .collect();
    if status == 302 || status == 303 {
        // An existing session (or an error) redirects straight away.
        return location(&page, authorize_url, status);
    }
    let html = read_body(page, authorize_url).await?;
    if status != 200 {
        return Err(KeycloakError::Status { url: authorize_url.to_owned(), status, body: html });
    }
    let action = form_action(&html).ok_or_else(|| KeycloakError::Status {
        url: authorize_url.to_owned(),
        status,
        body: "no login form (kc-form-login) in the page".to_owned(),
    })?;
    let form = [("username", username), ("password", password), ("credentialId", "")];
    let posted =
        send(client.post(&action).header(reqwest::header::COOKIE, cookies.join("; ")).form(&form), &action).await?;
    let status = posted.status().as_u16();
    if status != 302 && status != 303 {
        let body = read_body(posted, &action).await?;
        return Err(KeycloakError::Status { url: action, status, body: body.chars().take(500).collect() });
    }
    location(&posted, &action, status)
}

fn location(response: &reqwest::Response, url: &str, status: u16) -> Result<String, KeycloakError> {
    response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned).ok_or_else(
        || KeycloakError::Status { url: url.to_owned(), status, body: "a redirect without Location".to_owned() },
    )
}

/// The `action` of Keycloak's login form, HTML entities of URLs undone.
fn form_action(html: &str) -> Option<String> {
    let form = &html[html.find("id=\"kc-form-login\"")?..];
    let start = form.find("action=\"")? + "action=\"".len();
    let end = form[start..].find('"')? + start;
    Some(form[start..end].replace("&amp;", "&"))
}

fn http() -> Result<reqwest::Client, KeycloakError> {
    client_builder().build().map_err(|source| KeycloakError::Http { url: "(building the client)".to_owned(), source })
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().timeout(HTTP_TIMEOUT).pool_max_idle_per_host(0).no_proxy()
}

async fn send(request: reqwest::RequestBuilder, url: &str) -> Result<reqwest::Response, KeycloakError> {
    request.send().await.map_err(|source| KeycloakError::Http { url: url.to_owned(), source })
}

async fn read_body(response: reqwest::Response, url: &str) -> Result<String, KeycloakError> {
    response.text().await.map_err(|source| KeycloakError::Http { url: url.to_owned(), source })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_login_form_action() {
        let html = r#"<form id="kc-form-login" onsubmit="x" action="http://127.0.0.1:1/realms/mcp/login-actions/authenticate?session_code=a&amp;tab_id=b" method="post">"#;
        assert_eq!(
            form_action(html).as_deref(),
            Some("http://127.0.0.1:1/realms/mcp/login-actions/authenticate?session_code=a&tab_id=b")
        );
        assert_eq!(form_action("<form action=\"x\">"), None);
    }

    #[test]
    fn decodes_a_jwt_payload() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"aud":"mcp-gateway","groups":["a"]}"#);
        let claims = decode_claims(&format!("e30.{payload}.sig")).unwrap();
        assert_eq!(claims["aud"], "mcp-gateway");
        assert!(matches!(decode_claims("only.two"), Err(KeycloakError::NotAJwt(_))));
        assert!(matches!(decode_claims("a.!!!.c"), Err(KeycloakError::NotAJwt(_))));
    }

    #[test]
    fn token_set_debug_hides_tokens() {
        let set: TokenSet = serde_json::from_str(
            r#"{"access_token":"SECRET-A","token_type":"Bearer","expires_in":1800,"refresh_token":"SECRET-R"}"#,
        )
        .unwrap();
        let shown = format!("{set:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("1800"));
    }

    #[test]
    fn the_realm_fixture_is_the_mcp_realm() {
        let realm: Value = serde_json::from_str(REALM_JSON).unwrap();
        assert_eq!(realm["realm"], REALM);
    }

    #[test]
    fn stale_directories_of_dead_processes_go() {
        let root = std::env::temp_dir().join(format!("apiary-kc-stale-{}", std::process::id()));
        let dead = root.join("0-1");
        let mine = root.join(format!("{}-7", std::process::id()));
        std::fs::create_dir_all(&dead).unwrap();
        std::fs::create_dir_all(&mine).unwrap();
        remove_stale(&root);
        assert!(!dead.exists());
        assert!(mine.exists());
        std::fs::remove_dir_all(root).unwrap();
    }
}
