//! Images run through the real `apiary run IMAGE` against real rootful Podman (its Docker-API
//! service, started by `cargo xtask test` / `cargo xtask podman up`): an image built here from
//! the fixture server binary and its shared libraries (no registry), answering tools/list and
//! tools/call through the proxy over stdio and over HTTP; the hardening as the kernel shows it;
//! `--secret` reaching the server's environment and nothing of ours; an allow-list profile served
//! by the egress proxy; the escape table; and no container (nor namespace) left after `rm`, nor
//! after the proxy was SIGKILLed and `stop` ran.

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
        import_image(&root, &tag, &[r#"ENTRYPOINT ["/apiary-testkit-server"]"#]);
        tag
    })
}

/// Packs the root filesystem `root` into `<root>.tar` and imports that into the test Podman as
/// image `tag`, with `changes` (Dockerfile instructions: its ENTRYPOINT, ENV).
fn import_image(root: &Path, tag: &str, changes: &[&str]) {
    let tar = root.with_extension("tar");
    let status = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success(), "tar failed");
    // The podman CLI uses the service's private store (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF).
    let mut import = Command::new("podman");
    import.arg("import");
    for change in changes {
        import.args(["--change", change]);
    }
    let out = import.arg(&tar).arg(tag).output().expect("podman (installed by cargo xtask podman up)");
    assert!(out.status.success(), "podman import: {}", String::from_utf8_lossy(&out.stderr));
}

fn copy_into(root: &Path, from: &Path, inside: &Path) {
    let to = root.join(inside.strip_prefix("/").unwrap());
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, &to).unwrap();
}

/// `apiary ARGS` talking to the test Podman.
fn run(apiary: &Apiary, args: &[&str]) -> Out {
    run_with(apiary, args, "", &[])
}

/// [`run`] with `input` on stdin and extra environment.
fn run_with(apiary: &Apiary, args: &[&str], input: &str, env: &[(&str, &str)]) -> Out {
    let mut cmd = apiary.command(args);
    cmd.env("DOCKER_HOST", podman_socket()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    finish(child, COMMAND_LIMIT, &format!("apiary {}", args.join(" ")))
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            hits.push(path.display().to_string());
        }
    }
    hits
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

/// The one container of `workload`, as the engine inspects it.
#[track_caller]
fn only_container(workload: &str) -> serde_json::Value {
    let ids = containers_of(workload);
    assert_eq!(ids.len(), 1, "one container of {workload}: {ids:?}");
    api(&format!("/v1.41/containers/{}/json", ids[0]))
}

/// Asserts that process `pid`'s network namespace has no interface but `lo`.
#[track_caller]
fn assert_only_loopback(pid: u64) {
    // /proc/PID/net/dev: two header lines, then one line per interface.
    let devices = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap();
    assert!(!devices.lines().skip(2).any(|l| !l.trim_start().starts_with("lo:")), "only lo: {devices}");
}

/// A permission profile (a file in `apiary`'s scratch) allowing only api.example.com:443: the
/// allow-list the egress proxy serves. Its path.
fn allow_list_profile(apiary: &Apiary) -> String {
    let profile = apiary.scratch().join("allow.json");
    std::fs::write(&profile, r#"{"network":{"outbound":{"allow_host":["api.example.com"],"allow_port":[443]}}}"#)
        .unwrap();
    profile.to_str().unwrap().to_owned()
}

/// SIGKILLs the proxy of workload `name` and waits until it is gone.
fn kill_proxy(apiary: &Apiary, name: &str) {
    let proxy = apiary.state().load_record(name).unwrap().unwrap().proxy.unwrap();
    proxy.signal(Signal::KILL);
    assert!(apiary_runtime::pid::wait_until(Duration::from_secs(10), || !proxy.is_alive()));
}

/// `apiary rm NAME`; then no container of it and no process of the test is left.
#[track_caller]
fn rm_leaves_nothing(apiary: &Apiary, name: &str) {
    run(apiary, &["rm", name]).ok();
    assert_eq!(wait_no_containers(name), Vec::<String>::new());
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
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
    let c = only_container("cstdio");
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
    assert_only_loopback(pid);

    // A restart from a shell without DOCKER_HOST finds the engine the workload ran in, and the
    // old container is replaced, not kept beside the new one.
    apiary.run(&["restart", "cstdio"]).ok();
    let echo = run(&apiary, &["mcp", "call", "echo", "--server", "cstdio", "--args", r#"{"text":"again"}"#]);
    assert_eq!(echo.ok().stdout.trim(), "again");
    let after = containers_of("cstdio");
    assert!(after.len() == 1 && after[0] != c["Id"], "{after:?} (before: {})", c["Id"]);

    rm_leaves_nothing(&apiary, "cstdio");
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

    let c = only_container("chttp");
    let bindings = &c["HostConfig"]["PortBindings"][format!("{port}/tcp")];
    assert_eq!(bindings[0]["HostIp"], "127.0.0.1", "{bindings}");

    rm_leaves_nothing(&apiary, "chttp");
}

#[test]
fn an_image_gets_its_secret_as_an_env_var_and_no_file_or_output_of_ours_holds_it() {
    let apiary = Apiary::new();
    let value = "ctr-secret-7f3e9a-only-in-the-container";
    run_with(&apiary, &["secret", "setup"], "", &[]).ok();
    run_with(&apiary, &["secret", "set", "api-token"], value, &[]).ok();
    // With --debug: the engine client's debug lines (request and answer bodies, which carry the
    // container's environment) must still not reach the proxy's log.
    let args = [
        "--debug",
        "run",
        "--name",
        "csecret",
        "--permission-profile",
        "none",
        "--secret",
        "api-token,target=MY_TOKEN",
    ];
    run(&apiary, &[&args[..], &[image(), "--", "--stdio"]].concat()).ok();

    let env = run(&apiary, &["mcp", "call", "env", "--server", "csecret", "--args", r#"{"name":"MY_TOKEN"}"#]);
    assert_eq!(env.ok().stdout.trim(), value);

    let outputs = [
        run(&apiary, &["export", "csecret"]),
        run(&apiary, &["status", "csecret", "--format", "json"]),
        run(&apiary, &["list", "--format", "json"]),
        run(&apiary, &["logs", "csecret"]),
        run(&apiary, &["logs", "csecret", "--proxy"]),
    ];
    assert!(outputs[0].ok().stdout.contains("\"target\": \"MY_TOKEN\""), "{}", outputs[0].stdout);
    for out in &outputs {
        out.ok();
        assert!(!out.stdout.contains(value) && !out.stderr.contains(value), "{out:?}");
    }
    assert!(outputs[4].stdout.contains("DEBUG"), "the proxy logged at debug: {}", outputs[4].stdout);
    // The store holds it encrypted; nothing under the state directory holds it in clear.
    assert_eq!(files_containing(&apiary.state_dir(), value), Vec::<String>::new());
    // The engine has it in the container's environment (as `podman inspect` shows any
    // container's), never in a label or the command line.
    let c = only_container("csecret");
    assert!(c["Config"]["Env"].as_array().unwrap().contains(&format!("MY_TOKEN={value}").into()));
    for field in [&c["Config"]["Labels"], &c["Config"]["Cmd"], &c["Config"]["Entrypoint"], &c["Args"]] {
        assert!(!field.to_string().contains(value), "{field}");
    }

    rm_leaves_nothing(&apiary, "csecret");
}

#[test]
fn an_image_under_an_allow_list_runs_behind_the_egress_proxy_and_leaves_nothing_behind() {
    let apiary = Apiary::new();
    let profile = allow_list_profile(&apiary);
    let profile = profile.as_str();
    run(&apiary, &["run", "--name", "cegress", "--permission-profile", profile, image(), "--", "--stdio"]).ok();
    for var in ["HTTPS_PROXY", "http_proxy"] {
        let args = format!(r#"{{"name":"{var}"}}"#);
        let out = run(&apiary, &["mcp", "call", "env", "--server", "cegress", "--args", &args]);
        assert_eq!(out.ok().stdout.trim(), "http://127.0.0.1:3128", "{var}");
    }
    let status = run(&apiary, &["status", "cegress"]);
    assert!(status.ok().stdout.contains("allow-list through the egress proxy"), "{}", status.stdout);
    let pid = only_container("cegress")["State"]["Pid"].as_u64().unwrap();
    // Only lo, and something (the proxy) listening on 127.0.0.1:3128 (0x0C38) in its namespace.
    assert_only_loopback(pid);
    let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
    assert!(tcp.lines().any(|l| l.contains("0100007F:0C38 00000000:0000 0A")), "{tcp}");
    // A restart gets a new container in a new namespace, with the proxy again.
    run(&apiary, &["restart", "cegress"]).ok();
    let out = run(&apiary, &["mcp", "call", "env", "--server", "cegress", "--args", r#"{"name":"HTTP_PROXY"}"#]);
    assert_eq!(out.ok().stdout.trim(), "http://127.0.0.1:3128");

    // A SIGKILLed proxy leaves the container (conmon keeps it) but no host state: `stop` removes
    // the container, and with it the namespace (no process is left in it).
    let pid = only_container("cegress")["State"]["Pid"].as_u64().unwrap();
    let netns = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_ne!(netns, std::fs::read_link("/proc/self/ns/net").unwrap());
    kill_proxy(&apiary, "cegress");
    run(&apiary, &["stop", "cegress"]).ok();
    assert_eq!(wait_no_containers("cegress"), Vec::<String>::new());
    let in_netns = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| std::fs::read_link(e.path().join("ns/net")).is_ok_and(|l| l == netns))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    };
    // conmon may outlive its container by a moment.
    assert!(apiary_runtime::pid::wait_until(Duration::from_secs(10), || in_netns().is_empty()), "{:?}", in_netns());

    rm_leaves_nothing(&apiary, "cegress");
}

#[test]
fn an_http_image_under_an_allow_list_is_reached_through_its_proxy_only() {
    let apiary = Apiary::new();
    let profile = allow_list_profile(&apiary);
    let profile = profile.as_str();
    let port = apiary_runtime::ports::free_port("127.0.0.1").unwrap();
    let (port_arg, listen) = (port.to_string(), format!("0.0.0.0:{port}"));
    let args = [
        "run",
        "--name",
        "chttpallow",
        "--permission-profile",
        profile,
        "--transport",
        "streamable-http",
        "--target-port",
        &port_arg,
        image(),
        "--",
        "--http",
        &listen,
        "--allow-any-host",
    ];
    let url = run(&apiary, &args).ok().stdout.trim().to_owned();
    // `run` returned once the server answered through the socket: no retry needed.
    let tools = run(&apiary, &["mcp", "list", "tools", "--server", &url]);
    assert!(tools.ok().stdout.contains("echo"), "{}", tools.stdout);
    let out = run(&apiary, &["mcp", "call", "env", "--server", &url, "--args", r#"{"name":"HTTPS_PROXY"}"#]);
    assert_eq!(out.ok().stdout.trim(), "http://127.0.0.1:3128");

    // Nothing published: no port binding, the host's port closed, only lo in its namespace,
    // where both the server and the egress proxy listen.
    let c = only_container("chttpallow");
    let bindings = &c["HostConfig"]["PortBindings"];
    assert!(bindings.is_null() || bindings.as_object().is_some_and(serde_json::Map::is_empty), "{bindings}");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the server's port answered on the host");
    let pid = c["State"]["Pid"].as_u64().unwrap();
    assert_only_loopback(pid);
    let tcp = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
    let listening = |hex: &str| tcp.lines().any(|l| l.contains(hex) && l.contains(" 0A "));
    assert!(listening("0100007F:0C38"), "the egress proxy: {tcp}");
    assert!(listening(&format!("00000000:{port:04X}")), "the server: {tcp}");
    let socket = apiary.state().upstream_socket_path("chttpallow").unwrap();
    assert!(socket.exists(), "{}", socket.display());

    // A restart: a new container in a new namespace, reached again.
    run(&apiary, &["restart", "chttpallow"]).ok();
    let out = run(&apiary, &["mcp", "call", "echo", "--server", "chttpallow", "--args", r#"{"text":"again"}"#]);
    assert_eq!(out.ok().stdout.trim(), "again");

    rm_leaves_nothing(&apiary, "chttpallow");
    assert!(!socket.exists(), "rm leaves the socket behind");
}

#[test]
fn stop_removes_the_container_a_killed_proxy_left() {
    let apiary = Apiary::new();
    run(&apiary, &["run", "--name", "corphan", "--permission-profile", "none", image(), "--", "--stdio"]).ok();
    run(&apiary, &["mcp", "call", "echo", "--server", "corphan", "--args", r#"{"text":"up"}"#]).ok();
    assert_eq!(containers_of("corphan").len(), 1);
    let rec = apiary.state().load_record("corphan").unwrap().unwrap();
    assert!(rec.container.is_some(), "{rec:?}");
    kill_proxy(&apiary, "corphan");
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

// ---- The escape table for containers -------------------------------------------------------
//
// Each row runs a busybox probe in a container made by Apiary's own launcher with the spec a
// profile gives (`ContainerSpec`: capabilities dropped, no-new-privileges, read-only root,
// limits, the profile's network and mounts), and checks the forbidden half is blocked while
// the allowed half (the control) works. docs/containers.md carries the table.

use apiary_runtime::container::{ContainerLauncher, ContainerSpec, Limits, Network, engine};
use apiary_transport::launch::Launch;

/// busybox-static as an image whose entrypoint is `sh -c`.
fn probe_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let tag = "localhost/apiary-probe:test".to_owned();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        copy_into(&root, Path::new("/bin/busybox"), Path::new("/bin/busybox"));
        for applet in [
            "sh", "cat", "ls", "touch", "echo", "wget", "dd", "mount", "chown", "sleep", "seq", "grep", "nc", "printf",
            "env",
        ] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        for d in ["tmp", "proc", "sys", "dev", "mnt"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        import_image(&root, &tag, &[r#"ENTRYPOINT ["/bin/sh", "-c"]"#, "ENV PATH=/bin"]);
        tag
    })
}

/// Runs `script` in a probe container; its output (stdout and stderr) and exit status.
fn probe(script: &str, network: Network, binds: &[String]) -> (String, Option<i32>) {
    let mut spec = ContainerSpec {
        workload: "escape-probe".into(),
        image: probe_image().into(),
        args: vec![format!("exec 2>&1; {script}")],
        env: Vec::new(),
        http_port: None,
        network,
        binds: binds.to_vec(),
        limits: Limits::default(),
    };
    // What `ContainerSpec::for_run_config` does under an allow-list profile.
    spec.set_proxy_env();
    probe_spec(spec)
}

/// Runs a probe container of `spec` through Apiary's launcher; its output and exit status.
fn probe_spec(spec: ContainerSpec) -> (String, Option<i32>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let socket = podman_socket();
        let launcher = ContainerLauncher::new(engine::client_for(&socket).unwrap(), socket, spec);
        let handle = launcher.launch().await.unwrap();
        let mut stdout = handle.stdout;
        let read = async {
            let mut out = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut out).await.unwrap();
            String::from_utf8_lossy(&out).into_owned()
        };
        let out = tokio::time::timeout(Duration::from_secs(60), read).await.expect("probe output within 60 s");
        let exit = tokio::time::timeout(Duration::from_secs(30), handle.exited).await.unwrap().unwrap();
        drop(handle.stdin);
        (out, exit.code)
    })
}

#[test]
fn escape_table_forbidden_rows_are_blocked_and_allowed_rows_work() {
    let dir = tempfile::tempdir().unwrap();
    let (readable, writable, secret) = (dir.path().join("ro"), dir.path().join("rw"), dir.path().join("secret"));
    for d in [&readable, &writable] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(readable.join("f"), "readable").unwrap();
    std::fs::write(&secret, "host secret").unwrap();
    let binds = [format!("{}:/data:ro", readable.display()), format!("{}:/work:rw", writable.display())];

    // Reading outside `read`: the host file is not there; the granted path is.
    let (out, _) = probe(&format!("cat {}; cat /data/f", secret.display()), Network::None, &binds);
    assert!(!out.contains("host secret") && out.contains("readable"), "{out}");

    // Writing to a read-only path (a `read` mount, the root) fails; `write` and /tmp work.
    let (out, _) = probe(
        "echo x > /data/new; touch /rootfile; echo ok > /tmp/t && cat /tmp/t; echo w > /work/out",
        Network::None,
        &binds,
    );
    assert_eq!(out.matches("Read-only file system").count(), 2, "{out}");
    assert!(out.contains("ok"), "{out}");
    assert!(!readable.join("new").exists());
    assert_eq!(std::fs::read_to_string(writable.join("out")).unwrap(), "w\n");

    // A host loopback port: unreachable under profile `none` (the container's own loopback
    // answers nothing there); the control connects from the host.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (out, _) =
        probe(&format!("nc -w 3 127.0.0.1 {port} </dev/null && echo CONNECTED; echo done"), Network::None, &[]);
    assert!(!out.contains("CONNECTED") && out.contains("done"), "{out}");
    // …and no route off the machine at all.
    let (out, _) = probe("nc -w 3 10.88.0.1 80 </dev/null && echo CONNECTED; cat /proc/net/route", Network::None, &[]);
    assert!(!out.contains("CONNECTED") && !out.contains("00000000"), "{out}");

    // Host processes: only the container's own are visible.
    let own = std::process::id();
    let (out, _) = probe("ls /proc | grep -c '^[0-9]'; ls /proc", Network::None, &[]);
    let count: u32 = out.lines().next().unwrap().trim().parse().unwrap();
    assert!(count < 10 && !out.lines().any(|l| l.trim() == own.to_string()), "{out}");

    // Raising privileges: no capabilities, no new privileges, so chown and mount fail as root.
    let (out, _) = probe(
        "grep -E 'CapEff|NoNewPrivs' /proc/self/status; chown 65534 /tmp && echo CHOWNED; mount -t tmpfs none /mnt && echo MOUNTED",
        Network::None,
        &[],
    );
    assert!(out.contains("0000000000000000") && out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(!out.contains("CHOWNED") && !out.contains("MOUNTED"), "{out}");

    // Exhausting processes: forks stop at the pids limit (256) though 400 are asked for.
    // (A child shell forks until refused, which ends it; the count then uses builtins only, as
    // nothing more can be forked at the limit.)
    let (out, _) = probe(
        "sh -c 'for i in $(seq 400); do sleep 20 & done' 2>/dev/null; n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo \"running $n\"",
        Network::None,
        &[],
    );
    let running: u32 =
        out.lines().find_map(|l| l.strip_prefix("running ")).unwrap_or_else(|| panic!("{out}")).parse().unwrap();
    assert!((200..=256).contains(&running), "{out}");

    // Exhausting memory: 700 MiB in one buffer is killed at the 512 MiB limit; 64 MiB is fine.
    let (out, code) = probe("dd if=/dev/zero of=/dev/null bs=64M count=1 && echo SMALL-OK", Network::None, &[]);
    assert!(out.contains("SMALL-OK") && code == Some(0), "{out} {code:?}");
    let (out, code) = probe("dd if=/dev/zero of=/dev/null bs=700M count=1 && echo BIG-OK", Network::None, &[]);
    assert!(!out.contains("BIG-OK") && code == Some(137), "{out} {code:?}");

    assert_eq!(wait_no_containers("escape-probe"), Vec::<String>::new());
}

/// An HTTP server on 127.0.0.1 answering every request with `body`; it stops by itself after
/// `LIFETIME`.
fn http_server(body: &'static str) -> u16 {
    const LIFETIME: Duration = Duration::from_secs(180);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + LIFETIME;
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = write!(s, "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    port
}

#[test]
fn escape_table_allow_list_reaches_listed_hosts_through_the_proxy_only() {
    use apiary_config::OutboundPermissions;
    use apiary_runtime::sandbox::egress::AllowList;

    let allowed = http_server("allowed-body");
    let other = http_server("other-body");
    // The destination is the host's loopback, which the proxy dials only when listed literally.
    let allow = AllowList::from_outbound(&OutboundPermissions {
        allow_host: vec!["127.0.0.1".into()],
        allow_port: vec![allowed],
        ..OutboundPermissions::default()
    });
    let script = format!(
        "unset NO_PROXY no_proxy; echo \"proxy=$http_proxy\"; \
         wget -q -O - http://127.0.0.1:{allowed}/ && echo; echo \"allowed rc=$?\"; \
         wget -q -O - http://127.0.0.1:{other}/; echo \"other-port rc=$?\"; \
         printf 'GET http://127.0.0.1:{other}/ HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' | nc -w 5 127.0.0.1 3128; \
         printf 'CONNECT 127.0.0.1:{allowed} HTTP/1.1\\r\\n\\r\\n' | nc -w 5 127.0.0.1 3128 | grep -o '200 Connection established'; \
         printf 'CONNECT evil.example:{allowed} HTTP/1.1\\r\\n\\r\\n' | nc -w 5 127.0.0.1 3128; \
         nc -w 3 127.0.0.1 {allowed} </dev/null && echo DIRECT-LOOPBACK; \
         nc -w 3 10.88.0.1 80 </dev/null && echo DIRECT-GATEWAY; \
         nc -w 3 1.1.1.1 80 </dev/null && echo DIRECT-OUT; \
         echo routes; cat /proc/net/route; echo devices; cat /proc/net/dev"
    );
    // Its own workload label, so the escape table running beside it does not count its probes.
    let mut spec = ContainerSpec {
        workload: "escape-egress".into(),
        image: probe_image().into(),
        args: vec![format!("exec 2>&1; {script}")],
        env: Vec::new(),
        http_port: None,
        network: Network::AllowList(allow),
        binds: Vec::new(),
        limits: Limits::default(),
    };
    spec.set_proxy_env();
    let (out, _) = probe_spec(spec);
    assert!(out.contains("proxy=http://127.0.0.1:3128"), "{out}");
    // An allowed host and port through the proxy: plain HTTP forwarded, CONNECT tunnelled.
    assert!(out.contains("allowed-body") && out.contains("allowed rc=0"), "{out}");
    assert!(out.contains("200 Connection established"), "{out}");
    // An off-list port and an off-list host: 403 from the proxy, before any connection.
    assert!(!out.contains("other-body") && !out.contains("other-port rc=0"), "{out}");
    assert!(out.contains("server returned error: HTTP/1.1 403 Forbidden"), "{out}");
    assert!(out.contains(&format!("apiary egress: port {other} is not on the allow-list")), "{out}");
    assert!(out.contains("apiary egress: host evil.example is not on the allow-list"), "{out}");
    // Bypassing the proxy: the host's loopback port is not this loopback, and there is no route
    // off the namespace (no interface but lo), so nothing connects.
    for direct in ["DIRECT-LOOPBACK", "DIRECT-GATEWAY", "DIRECT-OUT"] {
        assert!(!out.contains(direct), "{direct}: {out}");
    }
    let routes = out.split("routes").nth(1).unwrap().split("devices").next().unwrap();
    assert!(routes.lines().filter(|l| !l.trim().is_empty()).count() <= 1, "a route: {routes}");
    // /proc/net/dev: two header lines, then one line per interface.
    let devices = out.split("\ndevices\n").nth(1).unwrap();
    assert!(!devices.lines().skip(2).any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("lo:")), "{devices}");

    assert_eq!(wait_no_containers("escape-egress"), Vec::<String>::new());
}
