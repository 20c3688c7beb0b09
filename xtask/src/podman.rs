//! `cargo xtask podman up | down | env`: rootful Podman from Debian as the Docker-API engine the
//! container tests run against (the recipe of ../shared/docs/podman-harness.md): the packages
//! (runc named explicitly: crun refuses this machine's hybrid cgroups), a private store and
//! `containers.conf` (runc, cgroupfs, file events, ulimits capped at what podman itself may
//! set), and `podman system service` on a unix socket in `$APIARY_CACHE/podman`, bounded by
//! `timeout`. `down` removes every container of that store, stops the service, resets the store
//! and takes back what netavark left on the host (its iptables chains, the `podman0` bridge, the
//! forwarding switch). Tests find the socket in `APIARY_PODMAN_SOCKET`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The variable tests read the engine's socket from (`unix:///…/podman.sock`).
pub const SOCKET_VAR: &str = "APIARY_PODMAN_SOCKET";

/// (Debian package, a file it installs that we use).
const PACKAGES: &[(&str, &str)] = &[
    ("podman", "/usr/bin/podman"),
    ("runc", "/usr/sbin/runc"),
    ("conmon", "/usr/bin/conmon"),
    ("netavark", "/usr/lib/podman/netavark"),
    ("aardvark-dns", "/usr/lib/podman/aardvark-dns"),
    ("catatonit", "/usr/bin/catatonit"),
    ("uidmap", "/usr/bin/newuidmap"),
    ("slirp4netns", "/usr/bin/slirp4netns"),
    ("busybox-static", "/bin/busybox"),
];

/// Longest life of the API service; `down` normally stops it long before.
const SERVICE_LIFETIME: &str = "180m";
/// How long `up` waits for the socket to answer.
const READY_LIMIT: Duration = Duration::from_secs(30);

pub fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("up") => {
            let env = up()?;
            for (k, v) in env {
                println!("export {k}={v}");
            }
            Ok(())
        }
        Some("down") => down(),
        Some("env") => {
            for (k, v) in env_of(&dir()?) {
                println!("export {k}={v}");
            }
            Ok(())
        }
        _ => {
            println!(
                "cargo xtask podman up | down | env\n\n  \
                 up    install podman (apt-get, when missing), write a private containers.conf and store under\n        \
                 $APIARY_CACHE/podman, start `podman system service` there; prints the variables to export\n  \
                 down  remove its containers, stop the service, reset the store, clean netavark's host state\n  \
                 env   print the variables (APIARY_PODMAN_SOCKET, CONTAINERS_CONF, CONTAINERS_STORAGE_CONF)"
            );
            Ok(())
        }
    }
}

/// The per-cache work directory.
fn dir() -> Result<PathBuf> {
    let root = match std::env::var_os("APIARY_CACHE").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").context("neither APIARY_CACHE nor HOME is set")?)
            .join(".cache")
            .join("apiary"),
    };
    Ok(root.join("podman"))
}

/// The variables tests (and `podman` commands against the same store) need.
pub fn env_of(w: &Path) -> Vec<(&'static str, String)> {
    vec![
        (SOCKET_VAR, format!("unix://{}", w.join("podman.sock").display())),
        ("CONTAINERS_CONF", w.join("etc/containers.conf").display().to_string()),
        ("CONTAINERS_STORAGE_CONF", w.join("etc/storage.conf").display().to_string()),
    ]
}

/// Installs, configures and starts the service (a running one is reused); returns the variables.
pub fn up() -> Result<Vec<(&'static str, String)>> {
    ensure_packages()?;
    let w = dir()?;
    let env = env_of(&w);
    let sock = w.join("podman.sock");
    if ping(&sock) {
        return Ok(env);
    }
    std::fs::create_dir_all(w.join("etc")).with_context(|| format!("creating {}", w.display()))?;
    let forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    let saved = w.join("ip_forward.before");
    if !saved.exists() {
        std::fs::write(&saved, forward.trim()).context("recording ip_forward")?;
    }
    let (nofile, nproc) = ulimits()?;
    let d = w.display();
    std::fs::write(
        w.join("etc/containers.conf"),
        format!(
            "[containers]\n\
             # At most podman's own hard limits: root here lacks CAP_SYS_RESOURCE to raise them.\n\
             default_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
             log_driver = \"k8s-file\"\n\n\
             [network]\nnetwork_backend = \"netavark\"\nnetwork_config_dir = \"{d}/networks\"\n\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
             events_logfile_path = \"{d}/events.log\"\ntmp_dir = \"{d}/libpod-tmp\"\n\
             static_dir = \"{d}/storage/libpod\"\nvolume_path = \"{d}/storage/volumes\"\n"
        ),
    )?;
    std::fs::write(
        w.join("etc/storage.conf"),
        format!("[storage]\ndriver = \"overlay\"\ngraphroot = \"{d}/storage\"\nrunroot = \"{d}/run\"\n"),
    )?;
    let _ = std::fs::remove_file(&sock);
    let log = std::fs::File::create(w.join("service.log"))?;
    let mut cmd = podman_command(&w, "timeout");
    cmd.args([SERVICE_LIFETIME, "podman", "system", "service", "--time=0"])
        .arg(format!("unix://{}", sock.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own process group (and session), so `down` can stop `timeout` and podman together
    // and a Ctrl-C in the test terminal does not.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().context("starting `podman system service`")?;
    std::fs::write(w.join("service.pid"), child.id().to_string())?;
    // Reaped when it ends, so that `down` in this same process (cargo xtask test) sees its
    // process group gone rather than a zombie leader.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    let started = Instant::now();
    while !ping(&sock) {
        if started.elapsed() > READY_LIMIT {
            bail!(
                "podman system service did not answer on {} within {READY_LIMIT:?}; see {}/service.log",
                sock.display(),
                d
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("podman: API service on unix://{}", sock.display());
    Ok(env)
}

/// A `podman`-family command using the private store.
fn podman_command(w: &Path, program: &str) -> Command {
    let mut cmd = Command::new(program);
    for (k, v) in env_of(w).into_iter().skip(1) {
        cmd.env(k, v);
    }
    cmd
}

/// True when the socket answers `GET /_ping` with 200.
fn ping(sock: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(sock) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// (nofile, nproc) podman may ask for: this process's hard limits, nproc also capped at 32768
/// (podman ran with that whatever the shell had; see the harness notes).
fn ulimits() -> Result<(u64, u64)> {
    let out = Command::new("sh").args(["-c", "ulimit -Hn; ulimit -Hu"]).output().context("reading ulimits")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut nums =
        text.lines().map(|l| if l.trim() == "unlimited" { u64::MAX } else { l.trim().parse().unwrap_or(1024) });
    let nofile = nums.next().unwrap_or(1024).min(1_048_576);
    let nproc = nums.next().unwrap_or(1024).min(32768);
    Ok((nofile, nproc))
}

fn ensure_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().filter(|(_, probe)| !Path::new(probe).exists()).map(|(p, _)| *p).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("podman: installing Debian packages: {}", missing.join(" "));
    let lock = ["-o", "DPkg::Lock::Timeout=300"];
    let ok = Command::new("apt-get").args(lock).args(["-q", "update"]).status().is_ok_and(|s| s.success());
    if !ok {
        bail!("apt-get update failed");
    }
    let ok = Command::new("apt-get")
        .args(lock)
        .args(["-q", "-y", "--no-install-recommends", "install"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    if let Some((p, probe)) = PACKAGES.iter().find(|(_, probe)| !Path::new(probe).exists()) {
        bail!("package {p} is installed but {probe} is still missing");
    }
    Ok(())
}

/// Removes the store's containers, stops the service, resets the store and cleans the host.
pub fn down() -> Result<()> {
    let w = dir()?;
    if !w.exists() {
        return Ok(());
    }
    let podman = Path::new("/usr/bin/podman").exists();
    if podman {
        // Every container of the private store is a test's.
        let _ = podman_command(&w, "podman").args(["rm", "--all", "--force", "--time", "2"]).output();
    }
    // The group of `timeout` and the podman it runs.
    if let Ok(pid) = std::fs::read_to_string(w.join("service.pid"))
        && let Ok(pid) = pid.trim().parse::<i32>()
        && let Some(pgid) = rustix::process::Pid::from_raw(pid)
    {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::TERM);
        let started = Instant::now();
        while rustix::process::test_kill_process_group(pgid).is_ok() && started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
    if podman {
        let _ = podman_command(&w, "podman").args(["system", "reset", "--force"]).output();
    }
    // conmon outlives its container by a moment.
    let started = Instant::now();
    while Command::new("pgrep").args(["-x", "conmon"]).output().is_ok_and(|o| o.status.success())
        && started.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    clean_netavark();
    for entry in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let parent = entry.path().join("libpod_parent");
        if parent.is_dir() {
            remove_cgroup_tree(&parent);
        }
    }
    if let Ok(before) = std::fs::read_to_string(w.join("ip_forward.before"))
        && matches!(before.trim(), "0" | "1")
    {
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", before.trim());
    }
    std::fs::remove_dir_all(&w).with_context(|| format!("removing {}", w.display()))?;
    eprintln!("podman: service stopped, store and host state removed");
    Ok(())
}

/// netavark's base chains and jump rules, which it leaves after the last container, and its bridge.
fn clean_netavark() {
    for table in ["filter", "nat"] {
        let Ok(out) = Command::new("iptables").args(["-t", table, "-S"]).output() else { return };
        let rules = String::from_utf8_lossy(&out.stdout).into_owned();
        for rule in rules.lines().filter(|r| r.starts_with("-A ") && r.contains("-j NETAVARK")) {
            let chain = rule.split_whitespace().nth(1).unwrap_or_default();
            if matches!(chain, "INPUT" | "FORWARD" | "OUTPUT" | "PREROUTING" | "POSTROUTING") {
                let words = shell_words(rule);
                let _ = Command::new("iptables").args(["-t", table, "-D"]).args(words.iter().skip(1)).output();
            }
        }
        let chains: Vec<&str> =
            rules.lines().filter_map(|r| r.strip_prefix("-N ")).filter(|c| c.starts_with("NETAVARK")).collect();
        for op in ["-F", "-X"] {
            for c in &chains {
                let _ = Command::new("iptables").args(["-t", table, op, c]).output();
            }
        }
    }
    let _ = Command::new("ip").args(["link", "del", "podman0"]).stderr(Stdio::null()).output();
}

/// The words of an `iptables -S` line, double-quoted ones (comments) kept whole.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

fn remove_cgroup_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_lines_split_with_quoted_comments_whole() {
        let words =
            shell_words(r#"-A FORWARD -m comment --comment "netavark firewall plugin rules" -j NETAVARK_FORWARD"#);
        assert_eq!(
            words,
            ["-A", "FORWARD", "-m", "comment", "--comment", "netavark firewall plugin rules", "-j", "NETAVARK_FORWARD"]
        );
    }
}
