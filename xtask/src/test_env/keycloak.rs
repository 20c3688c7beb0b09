//! Keycloak for the OIDC tests: fetches the pinned server distribution from Maven Central
//! with `mvn dependency:copy`, unpacks it into `$APIARY_CACHE/keycloak/<version>/` and primes
//! it once (the first `start-dev --db=dev-mem` runs Quarkus augmentation, ~17 s, and stores
//! the result in the distribution), so each test's copy starts in ~10 s instead of ~30 s.
//! Recipe and measurements: `docs/oidc-harness.md`.

use super::cache::{self, Cache};
use super::pins;
use crate::run_cmd;
use anyhow::{Context, Result, bail};
use rustix::process::{Pid, Signal, kill_process_group};
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Maven Central's download of a 177 MB zip plus Maven's own start-up.
const FETCH_LIMIT: Duration = Duration::from_secs(15 * 60);
const UNZIP_LIMIT: Duration = Duration::from_secs(5 * 60);
/// The priming start: augmentation (~17 s) plus boot (~11 s) on 2 cores, with room for a
/// busy machine.
const PRIME_READY_LIMIT: Duration = Duration::from_secs(4 * 60);
/// How long a stopping Keycloak gets after SIGTERM (it takes 1–2 s) before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(20);
const CHECK_LIMIT: Duration = Duration::from_secs(60);

/// Java installations to run Keycloak with, best first: Temurin 25 where the machine has it,
/// else Debian's 17 (which ran every flow here, though Keycloak documents 21).
const JAVA_HOMES: &[&str] = &["/usr/lib/jvm/temurin-25-jdk-amd64", "/usr/lib/jvm/java-17-openjdk-amd64"];

/// util-linux's `setpriv`, to give the priming Keycloak a parent-death signal without
/// `unsafe` `pre_exec`.
const SETPRIV: &str = "/usr/bin/setpriv";

/// Written by augmentation; its presence is what "primed" means.
const PRIMED_FILE: &str = "lib/quarkus/build-system.properties";

/// An installed, primed Keycloak.
pub struct Keycloak {
    /// The distribution's home (`bin/kc.sh`); tests copy it, never run it in place.
    pub home: PathBuf,
    pub java_home: PathBuf,
}

impl Keycloak {
    pub fn kc_sh(&self) -> PathBuf {
        self.home.join("bin").join("kc.sh")
    }

    /// Files that must exist for the install to be usable.
    pub fn targets(&self) -> Vec<PathBuf> {
        vec![self.kc_sh(), self.home.join(PRIMED_FILE), self.java_home.join("bin").join("java")]
    }
}

/// Installs and primes Keycloak unless already done. Returns it and whether it installed now.
pub fn ensure(cache: &Cache) -> Result<(Keycloak, bool)> {
    let java_home = find_java()?;
    let version = pins::KEYCLOAK_VERSION;
    let dir = cache.root().join("keycloak").join(version);
    let home = dir.join(format!("keycloak-{version}"));
    let m2 = cache.root().join("m2");
    let installed = cache::install_once(&dir, |dir| {
        eprintln!(
            "test-env: installing Keycloak {version} (Maven Central, then priming with Java {})",
            java_home.display()
        );
        fetch(dir, &m2).context("step 1/3, `mvn dependency:copy` of the Keycloak distribution")?;
        unpack(dir).context("step 2/3, unzip of the Keycloak distribution")?;
        prime(dir, &home, &java_home).context("step 3/3, priming Keycloak (first start-dev, augmentation)")
    })?;
    let found = Keycloak { home, java_home };
    for path in found.targets() {
        if !path.exists() {
            bail!("{} is missing from the Keycloak install; delete {} and rerun", path.display(), dir.display());
        }
    }
    Ok((found, installed))
}

/// The first Java home in [`JAVA_HOMES`] that has `bin/java`.
fn find_java() -> Result<PathBuf> {
    JAVA_HOMES.iter().map(PathBuf::from).find(|home| home.join("bin").join("java").is_file()).with_context(|| {
        format!("Keycloak needs Java 17+, found none of {}; install openjdk-17-jre-headless", JAVA_HOMES.join(", "))
    })
}

/// Copies the zip from Maven Central into `dir`; Maven's local repository is a throwaway
/// (it would keep a second 179 MB copy).
fn fetch(dir: &Path, m2: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(m2);
    let mut mvn = Command::new("mvn");
    mvn.arg("-B")
        .arg("-q")
        .arg("--no-transfer-progress")
        .arg(format!("-Dmaven.repo.local={}", m2.display()))
        .arg("dependency:copy")
        .arg(format!("-Dartifact=org.keycloak:keycloak-quarkus-dist:{}:zip", pins::KEYCLOAK_VERSION))
        .arg(format!("-DoutputDirectory={}", dir.display()))
        .stdin(Stdio::null());
    // Captured: Maven prints colour resets even in batch mode; shown only if it fails.
    let result = run_cmd::capture(&mut mvn, FETCH_LIMIT).and_then(|out| {
        if out.status.success() {
            return Ok(());
        }
        bail!("`{}` failed ({}):\n{}{}", run_cmd::describe(&mvn), out.status, tail_text(&out.stdout, 30), out.stderr)
    });
    if let Err(err) = fs::remove_dir_all(m2)
        && err.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("test-env: could not remove Maven's repository {}: {err}", m2.display());
    }
    result
}

/// Unzips the distribution next to the zip, then deletes the zip.
fn unpack(dir: &Path) -> Result<()> {
    let zip = dir.join(format!("keycloak-quarkus-dist-{}.zip", pins::KEYCLOAK_VERSION));
    if !zip.is_file() {
        bail!("Maven finished but {} is not there", zip.display());
    }
    let mut unzip = Command::new("unzip");
    unzip.arg("-q").arg(&zip).arg("-d").arg(dir).stdin(Stdio::null());
    run_cmd::run_ok(&mut unzip, UNZIP_LIMIT)?;
    fs::remove_file(&zip).with_context(|| format!("cannot remove {}", zip.display()))
}

/// Starts the fresh distribution once with the build-time options the tests use
/// (`start-dev --db=dev-mem`), waits for it to answer, stops it and removes the state it
/// wrote. Augmentation runs again whenever build-time options change, so they must match
/// `apiary_testkit::keycloak` exactly.
fn prime(dir: &Path, home: &Path, java_home: &Path) -> Result<()> {
    let kc_sh = home.join("bin").join("kc.sh");
    if !kc_sh.is_file() {
        bail!("{} is not in the unpacked distribution", kc_sh.display());
    }
    let log_path = dir.join("prime.log");
    let tmp = dir.join("prime-tmp");
    fs::create_dir_all(&tmp)?;
    let port = free_port()?;
    let log = fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    // Its own process group (one signal stops `timeout`, `kc.sh` and `java`) means Ctrl-C
    // does not reach it; the parent-death signal stops it when this run dies. `ensure` runs
    // on the main thread, whose end is the process's end.
    let mut cmd = if Path::new(SETPRIV).is_file() {
        let mut cmd = Command::new(SETPRIV);
        cmd.args(["--pdeathsig", "TERM", "--", "timeout"]);
        cmd
    } else {
        Command::new("timeout")
    };
    cmd.args(["--kill-after=10s", "10m"])
        .arg(&kc_sh)
        .args(["start-dev", "--http-host=127.0.0.1", &format!("--http-port={port}"), "--db=dev-mem"])
        .env("JAVA_HOME", java_home)
        .env("KC_BOOTSTRAP_ADMIN_USERNAME", "admin")
        .env("KC_BOOTSTRAP_ADMIN_PASSWORD", "prime-only")
        .env("JAVA_OPTS_KC_HEAP", "-Xms64m -Xmx256m")
        // Keeps Vert.x's scratch directories out of the system temp dir.
        .env("JAVA_OPTS_APPEND", format!("-Djava.io.tmpdir={}", tmp.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot start `timeout … kc.sh start-dev`")?;
    let ready = wait_ready(&mut child, port, PRIME_READY_LIMIT);
    stop(&mut child);
    if let Err(err) = ready {
        bail!("{err:#}; the end of {}:\n{}", log_path.display(), tail(&log_path, 30));
    }
    eprintln!("test-env: Keycloak primed in {:.1}s", started.elapsed().as_secs_f64());
    for scratch in [home.join("data"), tmp] {
        if scratch.exists() {
            fs::remove_dir_all(&scratch).with_context(|| format!("cannot remove {}", scratch.display()))?;
        }
    }
    if !home.join(PRIMED_FILE).is_file() {
        bail!("Keycloak started but {} was not written; see {}", PRIMED_FILE, log_path.display());
    }
    Ok(())
}

/// A loopback port free at the moment of asking.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind a loopback port")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until `GET /realms/master` answers 200, failing early if Keycloak exits.
fn wait_ready(child: &mut Child, port: u16, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!("Keycloak exited ({status}) before answering");
        }
        if http_ok(port, "/realms/master") {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(500));
    }
    bail!("Keycloak did not answer on 127.0.0.1:{port} within {}s", limit.as_secs())
}

/// True if a plain HTTP/1.0 GET of `path` gets status 200 (no HTTP client in xtask).
fn http_ok(port: u16, path: &str) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let line = String::from_utf8_lossy(&head[..got]);
    line.starts_with("HTTP/1.") && line.get(9..12) == Some("200")
}

/// SIGTERM to the process group (`timeout`, `kc.sh`, `java`), then SIGKILL if it lingers.
fn stop(child: &mut Child) {
    let group = Pid::from_child(child);
    let _ = kill_process_group(group, Signal::TERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    // `timeout` waits for its child, so once it is gone only strays could remain.
    let _ = kill_process_group(group, Signal::KILL);
    let _ = child.kill();
    let _ = child.wait();
}

/// The last `lines` lines of a log file, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    tail_text(&fs::read_to_string(path).unwrap_or_default(), lines)
}

fn tail_text(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Proves the install runs: `kc.sh --version` names the pinned version.
pub fn check(keycloak: &Keycloak) -> Result<String> {
    let mut cmd = Command::new(keycloak.kc_sh());
    cmd.arg("--version").env("JAVA_HOME", &keycloak.java_home);
    let out = run_cmd::capture(&mut cmd, CHECK_LIMIT)?;
    let line = out.stdout.lines().find(|l| l.starts_with("Keycloak ")).unwrap_or("").trim().to_owned();
    if !out.status.success() || line != format!("Keycloak {}", pins::KEYCLOAK_VERSION) {
        bail!(
            "expected \"Keycloak {}\", got {line:?} ({}); stderr: {}",
            pins::KEYCLOAK_VERSION,
            out.status,
            out.stderr.trim()
        );
    }
    Ok(format!("{line} on {}", keycloak.java_home.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let path = std::env::temp_dir().join(format!("xtask-kc-tail-{}", std::process::id()));
        fs::write(&path, "a\nb\nc\n").unwrap_or_default();
        assert_eq!(tail(&path, 2), "b\nc");
        assert_eq!(tail(&path, 10), "a\nb\nc");
        let _ = fs::remove_file(path);
    }

    #[test]
    fn http_ok_is_false_without_a_server() {
        let port = free_port().unwrap_or(1);
        assert!(!http_ok(port, "/"));
    }
}
