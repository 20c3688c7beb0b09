//! The process sandbox's escape table, against the real `apiary __sandbox-exec` helper and the
//! real kernel: a Python probe tries each escape inside the sandbox, and the same probe run
//! unsandboxed (the control column) shows that each row could fail. Then the fixture MCP server
//! runs sandboxed behind `apiary run` and answers tools/call from inside its own pid namespace.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

use apiary_config::PermissionProfile;
use apiary_runtime::sandbox::SandboxSpec;
use apiary_testkit::binaries::testkit_server;
use support::Apiary;

const PYTHON: &str = "/usr/bin/python3";

/// Each action prints `OK <detail>` or `DENIED <errno name>`.
const PROBE: &str = r#"
import ctypes, errno, os, socket, sys
action, arg = sys.argv[1], sys.argv[2]
try:
    if action == "read":
        print("OK", open(arg).read().strip())
    elif action == "write":
        with open(arg, "w") as f: f.write("from the sandbox")
        print("OK wrote")
    elif action == "connect":
        socket.create_connection(("127.0.0.1", int(arg)), timeout=5).close()
        print("OK connected")
    elif action == "procs":
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        print("OK", "visible" if arg in pids else "hidden", len(pids))
    elif action == "ptrace":
        libc = ctypes.CDLL(None, use_errno=True)
        r = libc.ptrace(0, 0, 0, 0)  # PTRACE_TRACEME
        print("OK traced" if r == 0 else "DENIED " + errno.errorcode[ctypes.get_errno()])
    elif action == "mount":
        libc = ctypes.CDLL(None, use_errno=True)
        r = libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)
        print("OK mounted" if r == 0 else "DENIED " + errno.errorcode[ctypes.get_errno()])
except OSError as e:
    print("DENIED", errno.errorcode.get(e.errno, str(e.errno)))
"#;

/// Runs the probe, in the sandbox `spec` describes or (None) as a plain child; its one output line.
fn probe(spec: Option<&SandboxSpec>, action: &str, arg: &str) -> String {
    let mut cmd = match spec {
        Some(spec) => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_apiary"));
            c.args(["__sandbox-exec", "--spec", &serde_json::to_string(spec).unwrap(), "--", PYTHON]);
            c
        }
        None => Command::new(PYTHON),
    };
    let out = cmd.args(["-c", PROBE, action, arg]).stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && !stdout.is_empty(),
        "probe {action} failed: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A profile file, parsed the way `--permission-profile FILE` parses it.
fn profile(dir: &Path, json: &str) -> PermissionProfile {
    let path = dir.join("profile.json");
    std::fs::write(&path, json).unwrap();
    PermissionProfile::from_arg(path.to_str().unwrap()).unwrap()
}

struct Dirs {
    _root: tempfile::TempDir,
    secret: std::path::PathBuf,
    readable: std::path::PathBuf,
    writable: std::path::PathBuf,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let (hidden, readable, writable) = (root.path().join("hidden"), root.path().join("ro"), root.path().join("rw"));
    for d in [&hidden, &readable, &writable] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(hidden.join("secret"), "s3cret").unwrap();
    std::fs::write(readable.join("shared"), "shared-data").unwrap();
    Dirs { secret: hidden.join("secret"), readable, writable, _root: root }
}

fn spec_for(d: &Dirs, network: &str) -> SandboxSpec {
    let p = profile(
        d.writable.parent().unwrap(),
        &format!(r#"{{"read": ["{}"], "write": ["{}"]{network}}}"#, d.readable.display(), d.writable.display()),
    );
    SandboxSpec::from_profile(&p, false)
}

#[test]
fn files_outside_the_profile_are_invisible_and_read_paths_are_read_only() {
    let d = dirs();
    let spec = spec_for(&d, "");
    let secret = d.secret.to_str().unwrap();
    assert_eq!(probe(None, "read", secret), "OK s3cret", "control");
    assert_eq!(probe(Some(&spec), "read", secret), "DENIED ENOENT");

    let shared = d.readable.join("shared");
    assert_eq!(probe(Some(&spec), "read", shared.to_str().unwrap()), "OK shared-data");
    let new_in_ro = d.readable.join("new");
    assert_eq!(probe(Some(&spec), "write", new_in_ro.to_str().unwrap()), "DENIED EROFS");
    assert!(!new_in_ro.exists());
    assert_eq!(probe(None, "write", new_in_ro.to_str().unwrap()), "OK wrote", "control");
    assert_eq!(probe(Some(&spec), "write", "/etc/apiary-sandbox-escape"), "DENIED EROFS");
}

#[test]
fn write_paths_are_writable_and_the_host_sees_the_file() {
    let d = dirs();
    let spec = spec_for(&d, "");
    let out = d.writable.join("out");
    assert_eq!(probe(Some(&spec), "write", out.to_str().unwrap()), "OK wrote");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "from the sandbox");
}

#[test]
fn profile_none_cannot_reach_a_host_port_and_network_can() {
    let d = dirs();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    assert_eq!(probe(None, "connect", &port), "OK connected", "control");
    let none = spec_for(&d, "");
    assert!(probe(Some(&none), "connect", &port).starts_with("DENIED"), "profile none connected");
    let network = spec_for(&d, r#", "network": {"outbound": {"insecure_allow_all": true}}"#);
    assert_eq!(probe(Some(&network), "connect", &port), "OK connected");
}

#[test]
fn host_processes_are_not_visible() {
    let d = dirs();
    let me = std::process::id().to_string();
    assert!(probe(None, "procs", &me).starts_with("OK visible"), "control");
    let out = probe(Some(&spec_for(&d, "")), "procs", &me);
    assert!(out.starts_with("OK hidden"), "{out}");
    // Only the sandbox's own processes: its init and the probe.
    let count: usize = out.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count <= 3, "{out}");
}

#[test]
fn forbidden_syscalls_fail_with_eperm() {
    let d = dirs();
    let spec = spec_for(&d, "");
    assert_eq!(probe(None, "ptrace", "-"), "OK traced", "control");
    assert_eq!(probe(Some(&spec), "ptrace", "-"), "DENIED EPERM");
    assert_eq!(probe(Some(&spec), "mount", "-"), "DENIED EPERM");
}

#[test]
fn a_malformed_profile_is_refused_before_anything_runs() {
    let apiary = Apiary::new();
    let path = apiary.scratch().join("bad.json");
    std::fs::write(&path, "{\n  \"read\": [\"/srv\"],\n  \"wirte\": []\n}").unwrap();
    let server = testkit_server().to_string_lossy().into_owned();
    let out =
        apiary.run(&["run", "--name", "p", "--permission-profile", path.to_str().unwrap(), "--", &server, "--stdio"]);
    let err = out.failed();
    assert!(err.contains("bad.json") && err.contains("unknown field `wirte`") && err.contains("line 3"), "{err}");
    assert!(apiary.state().names().unwrap().is_empty());
    assert!(apiary.processes().is_empty());
}

#[test]
fn the_fixture_server_runs_sandboxed_behind_apiary_run_and_answers() {
    let apiary = Apiary::new();
    let server = testkit_server().to_string_lossy().into_owned();
    let url = apiary.run(&["run", "--name", "s", "--permission-profile", "none", "--", &server, "--stdio"]);
    let url = url.ok().stdout.trim().to_owned();
    let out = apiary.run(&["mcp", "call", "echo", "--server", &url, "--args", r#"{"text":"boxed"}"#]);
    assert_eq!(out.ok().stdout.trim(), "boxed");
    // Its pid comes from its own pid namespace (init is 1, the server 2).
    let pid: u32 = apiary.run(&["mcp", "call", "pid", "--server", "s"]).ok().stdout.trim().parse().unwrap();
    assert_eq!(pid, 2);
    let status = apiary.run(&["status", "s"]);
    assert!(status.ok().stdout.contains("sandbox (profile none: no network)"), "{}", status.stdout);

    // The control: --isolation none gives it a host pid.
    let url = apiary.run(&["run", "--name", "u", "--isolation", "none", "--", &server, "--stdio"]);
    let url = url.ok().stdout.trim().to_owned();
    let pid: u32 = apiary.run(&["mcp", "call", "pid", "--server", &url]).ok().stdout.trim().parse().unwrap();
    assert!(pid > 2 && apiary.processes().contains(&pid), "{pid}");
    apiary.run(&["rm", "--all"]).ok();
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
}
