//! Images run through the real `apiary run IMAGE` against real rootful Podman (its Docker-API
//! service, started by `cargo xtask test` / `cargo xtask podman up`): an image built here from
//! the fixture server binary and its shared libraries (no registry), answering tools/list and
//! tools/call through the proxy over stdio and over HTTP; the hardening as the kernel shows it;
//! and no container left after `rm`, nor after the proxy was SIGKILLed and `stop` ran.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use apiary_testkit::binaries::testkit_server;
use apiary_testkit::env::podman_socket;
use rustix::process::Signal;
use support::{Apiary, COMMAND_LIMIT, Out, finish};

/// The label every Apiary container carries (apiary_runtime::container::WORKLOAD_LABEL).
const LABEL: &str = "dev.apiary.workload";

/// The fixture server as an image, imported once per test binary from a rootfs tarball.
fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let tag = "localhost/apiary-testkit-server:test".to_owned();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        let server = testkit_server();
        copy_into(&root, &server, Path::new("/apiary-testkit-server"));
        // The dynamic loader and the libraries ldd names, at the same paths.
        let ldd = Command::new("ldd").arg(&server).output().unwrap();
        for lib in String::from_utf8_lossy(&ldd.stdout).split_whitespace().filter(|w| w.starts_with('/')) {
            copy_into(&root, Path::new(lib), Path::new(lib));
        }
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        let tar = dir.path().join("rootfs.tar");
        let status = Command::new("tar")
            .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success(), "tar failed");
        // The podman CLI uses the service's private store (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF).
        let out = Command::new("podman")
            .args(["import", "--change", r#"ENTRYPOINT ["/apiary-testkit-server"]"#])
            .arg(&tar)
            .arg(&tag)
            .stdout(Stdio::null())
            .output()
            .expect("podman (installed by cargo xtask podman up)");
        assert!(out.status.success(), "podman import: {}", String::from_utf8_lossy(&out.stderr));
        tag
    })
}

fn copy_into(root: &Path, from: &Path, inside: &Path) {
    let to = root.join(inside.strip_prefix("/").unwrap());
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, &to).unwrap();
}

/// `apiary ARGS` talking to the test Podman.
fn run(apiary: &Apiary, args: &[&str]) -> Out {
    let child = apiary
        .command(args)
        .env("DOCKER_HOST", podman_socket())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(child, COMMAND_LIMIT, &format!("apiary {}", args.join(" ")))
}

/// A GET on the engine's API; the JSON answer.
fn api(path: &str) -> serde_json::Value {
    let socket = podman_socket();
    let mut s = UnixStream::connect(socket.trim_start_matches("unix://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: d\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"), "{path}: {head}\n{body}");
    serde_json::from_str(body).unwrap()
}

/// Ids of the containers of `workload`, running or not.
fn containers_of(workload: &str) -> Vec<String> {
    let filter = format!(r#"{{"label":["{LABEL}={workload}"]}}"#);
    let list = api(&format!("/v1.41/containers/json?all=1&filters={}", percent(&filter)));
    list.as_array().unwrap().iter().map(|c| c["Id"].as_str().unwrap().to_owned()).collect()
}

/// Waits (bounded) until `workload` has no container; returns what is left.
fn wait_no_containers(workload: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = containers_of(workload);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The cgroup v1 (or v2) file of `controller` for process `pid`.
fn cgroup_file(pid: u64, controller: &str, v1: &str, v2: &str) -> String {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, names, path) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        if names.split(',').any(|n| n == controller) {
            return std::fs::read_to_string(format!("/sys/fs/cgroup/{controller}{path}/{v1}"))
                .unwrap()
                .trim()
                .to_owned();
        }
        if names.is_empty()
            && let Ok(v) = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/{v2}"))
        {
            return v.trim().to_owned();
        }
    }
    panic!("no {controller} cgroup for {pid}: {cgroups}");
}

#[test]
fn an_image_answers_over_stdio_through_the_proxy_hardened_and_rm_leaves_no_container() {
    let apiary = Apiary::new();
    let image = image();
    let out = run(&apiary, &["run", "--name", "cstdio", "--permission-profile", "none", image, "--", "--stdio"]);
    let url = out.ok().stdout.trim().to_owned();

    let tools = run(&apiary, &["mcp", "list", "tools", "--server", &url]);
    assert!(tools.ok().stdout.contains("echo"), "{}", tools.stdout);
    let echo = run(&apiary, &["mcp", "call", "echo", "--server", "cstdio", "--args", r#"{"text":"from podman"}"#]);
    assert_eq!(echo.ok().stdout.trim(), "from podman");
    // The server's pid is from the container's own pid namespace, not one of this test's.
    let pid: u32 = run(&apiary, &["mcp", "call", "pid", "--server", "cstdio"]).ok().stdout.trim().parse().unwrap();
    assert!(!apiary.processes().contains(&pid), "{pid}");

    let list = run(&apiary, &["list"]);
    let row = list.ok().stdout.lines().find(|l| l.starts_with("cstdio ")).unwrap().to_owned();
    assert!(row.contains(" container "), "{row}");
    let status = run(&apiary, &["status", "cstdio"]);
    assert!(status.ok().stdout.contains("Runtime:     container"), "{}", status.stdout);

    // The hardening, as the engine recorded it and as the kernel enforces it.
    let ids = containers_of("cstdio");
    assert_eq!(ids.len(), 1, "one shared container: {ids:?}");
    let c = api(&format!("/v1.41/containers/{}/json", ids[0]));
    let h = &c["HostConfig"];
    assert_eq!(h["ReadonlyRootfs"], true);
    assert_eq!(h["NetworkMode"], "none");
    assert_eq!(h["SecurityOpt"], serde_json::json!(["no-new-privileges"]));
    assert_eq!(h["Memory"], 512 * 1024 * 1024);
    assert_eq!(h["PidsLimit"], 256);
    assert_eq!(c["Config"]["Tty"], false);
    let pid = c["State"]["Pid"].as_u64().unwrap();
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(proc_status.contains("CapEff:\t0000000000000000"), "{proc_status}");
    assert!(proc_status.contains("NoNewPrivs:\t1"), "{proc_status}");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mounts.lines().find(|l| l.split_whitespace().nth(4) == Some("/")).unwrap();
    assert!(root.split_whitespace().nth(5).unwrap().split(',').any(|o| o == "ro"), "{root}");
    assert_eq!(cgroup_file(pid, "memory", "memory.limit_in_bytes", "memory.max"), (512 * 1024 * 1024).to_string());
    assert_eq!(cgroup_file(pid, "pids", "pids.max", "pids.max"), "256");
    let devices = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
    assert!(!devices.lines().skip(2).any(|l| !l.trim_start().starts_with("lo:")), "network none: {devices}");

    // A restart from a shell without DOCKER_HOST finds the engine the workload ran in, and the
    // old container is replaced, not kept beside the new one.
    apiary.run(&["restart", "cstdio"]).ok();
    let echo = run(&apiary, &["mcp", "call", "echo", "--server", "cstdio", "--args", r#"{"text":"again"}"#]);
    assert_eq!(echo.ok().stdout.trim(), "again");
    let after = containers_of("cstdio");
    assert!(after.len() == 1 && after[0] != ids[0], "{after:?} (before: {ids:?})");

    run(&apiary, &["rm", "cstdio"]).ok();
    assert_eq!(wait_no_containers("cstdio"), Vec::<String>::new());
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
}

#[test]
fn an_image_serves_streamable_http_on_a_published_loopback_port() {
    let apiary = Apiary::new();
    let image = image();
    let port = apiary_runtime::ports::free_port("127.0.0.1").unwrap().to_string();
    let listen = format!("0.0.0.0:{port}");
    let out = run(
        &apiary,
        &[
            "run",
            "--name",
            "chttp",
            "--transport",
            "streamable-http",
            "--target-port",
            &port,
            image,
            "--",
            "--http",
            &listen,
            "--allow-any-host",
        ],
    );
    let url = out.ok().stdout.trim().to_owned();
    // The server may still be binding when the first request arrives; retry that one briefly.
    let deadline = Instant::now() + Duration::from_secs(20);
    let tools = loop {
        let tools = run(&apiary, &["mcp", "list", "tools", "--server", &url]);
        if tools.code == Some(0) || Instant::now() >= deadline {
            break tools;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(tools.ok().stdout.contains("echo"), "{}", tools.stdout);
    let echo = run(&apiary, &["mcp", "call", "echo", "--server", &url, "--args", r#"{"text":"over http"}"#]);
    assert_eq!(echo.ok().stdout.trim(), "over http");

    let ids = containers_of("chttp");
    assert_eq!(ids.len(), 1);
    let c = api(&format!("/v1.41/containers/{}/json", ids[0]));
    let bindings = &c["HostConfig"]["PortBindings"][format!("{port}/tcp")];
    assert_eq!(bindings[0]["HostIp"], "127.0.0.1", "{bindings}");

    run(&apiary, &["rm", "chttp"]).ok();
    assert_eq!(wait_no_containers("chttp"), Vec::<String>::new());
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
}

#[test]
fn stop_removes_the_container_a_killed_proxy_left() {
    let apiary = Apiary::new();
    run(&apiary, &["run", "--name", "corphan", "--permission-profile", "none", image(), "--", "--stdio"]).ok();
    run(&apiary, &["mcp", "call", "echo", "--server", "corphan", "--args", r#"{"text":"up"}"#]).ok();
    assert_eq!(containers_of("corphan").len(), 1);
    let rec = apiary.state().load_record("corphan").unwrap().unwrap();
    assert!(rec.container.is_some(), "{rec:?}");
    let proxy = rec.proxy.unwrap();
    proxy.signal(Signal::KILL);
    assert!(apiary_runtime::pid::wait_until(Duration::from_secs(10), || !proxy.is_alive()));
    // conmon keeps the container running without its proxy.
    assert_eq!(containers_of("corphan").len(), 1);

    let stop = run(&apiary, &["--debug", "stop", "corphan"]);
    stop.ok();
    assert_eq!(wait_no_containers("corphan"), Vec::<String>::new(), "{}", stop.stderr);
    run(&apiary, &["rm", "corphan"]).ok();
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
}

#[test]
fn what_containers_cannot_enforce_is_refused_with_the_reason() {
    let apiary = Apiary::new();
    let profile = apiary.scratch().join("allow.json");
    std::fs::write(&profile, r#"{"network":{"outbound":{"allow_host":["api.example.com"],"allow_port":[443]}}}"#)
        .unwrap();
    let out = run(&apiary, &["run", "--name", "callow", "--permission-profile", profile.to_str().unwrap(), image()]);
    let err = out.failed();
    assert!(err.contains("allow_host"), "{err}");
    assert!(containers_of("callow").is_empty());

    let err = run(&apiary, &["run", "--name", "ccmd", "--runtime", "container", "--", "python3", "s.py"]);
    assert!(err.failed().contains("--runtime container runs container images"), "{}", err.stderr);

    // No engine where DOCKER_HOST points: the error names it.
    let missing = format!("unix://{}", apiary.scratch().join("no-engine.sock").display());
    let child = apiary
        .command(&["run", "--name", "cnone", image(), "--", "--stdio"])
        .env("DOCKER_HOST", &missing)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, COMMAND_LIMIT, "apiary run with no engine");
    let err = out.failed();
    assert!(err.contains("no container engine answers") && err.contains(&missing), "{err}");
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
}
