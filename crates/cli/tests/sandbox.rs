//! The process sandbox's escape table, against the real `apiary __sandbox-exec` helper and the
//! real kernel: a Python probe tries each escape inside the sandbox, and the same probe run
//! unsandboxed (the control column) shows that each row could fail: files, network, processes,
//! privileges (capabilities, setuid, `unshare -r`, uid_map, CAP_SYS_ADMIN), a fork loop and an
//! allocation past the memory limit. Then the fixture MCP server
//! runs sandboxed behind `apiary run` and answers tools/call from inside its own pid namespace.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
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
    elif action == "caps":
        status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
        print("OK CapEff=" + status["CapEff"].strip(), "NoNewPrivs=" + status["NoNewPrivs"].strip())
    elif action == "exec":
        import subprocess
        print("OK", subprocess.run([arg], capture_output=True, text=True, check=True).stdout.strip())
    elif action == "userns":
        # What `unshare -r` does: a new user namespace, then map uid 0 in it.
        libc = ctypes.CDLL(None, use_errno=True)
        uid = os.geteuid()
        if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
            print("DENIED unshare", errno.errorcode[ctypes.get_errno()])
        else:
            with open("/proc/self/uid_map", "w") as f: f.write("0 %d 1" % uid)
            print("OK mapped")
    elif action == "uid_map":
        with open("/proc/self/uid_map", "w") as f: f.write("0 0 4294967295")
        print("OK rewrote")
    elif action == "hostname":
        # sethostname needs CAP_SYS_ADMIN; the control does it in a UTS namespace of its own.
        libc = ctypes.CDLL(None, use_errno=True)
        if arg == "own-uts" and libc.unshare(0x04000000) != 0:  # CLONE_NEWUTS
            raise OSError(ctypes.get_errno(), "unshare")
        r = libc.sethostname(b"escaped", 7)
        print("OK renamed" if r == 0 else "DENIED " + errno.errorcode[ctypes.get_errno()])
    elif action == "fork":
        # Forks until refused (or `arg` children), each blocked on a pipe, then lets them all go.
        r, w = os.pipe()
        kids, why = [], None
        try:
            while len(kids) < int(arg):
                pid = os.fork()
                if pid == 0:
                    os.close(w)
                    os.read(r, 1)
                    os._exit(0)
                kids.append(pid)
        except OSError as e:
            why = errno.errorcode.get(e.errno, str(e.errno))
        os.close(w)
        for k in kids: os.waitpid(k, 0)
        print(("DENIED " + why) if why else "OK", len(kids))
    elif action == "raise-nproc":
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (hard + 1, hard + 1))
            print("OK raised", hard + 1)
        except ValueError:
            print("DENIED EPERM", hard)
    elif action == "alloc":
        try:
            block = bytearray(int(arg) << 20)
            block[::4096] = b"x" * len(block[::4096])
            print("OK allocated", len(block) >> 20)
        except MemoryError:
            print("DENIED ENOMEM")
except OSError as e:
    print("DENIED", errno.errorcode.get(e.errno, str(e.errno)))
"#;

/// Runs the probe, in the sandbox `spec` describes or (None) as a plain child; its one output line.
fn probe(spec: Option<&SandboxSpec>, action: &str, arg: &str) -> String {
    probe_as(None, spec, action, arg)
}

/// The apiary binary where another user can run it: the build's copy may sit under a
/// directory only root may enter (`/root/.cache/...`), so it is linked (or copied) once into
/// a temp dir of mode 0755, which the test that uses it removes.
fn apiary_for_others() -> PathBuf {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("apiary-sandbox-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("apiary");
        let _ = std::fs::remove_file(&copy);
        if std::fs::hard_link(env!("CARGO_BIN_EXE_apiary"), &copy).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_apiary"), &copy).unwrap();
        }
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        copy
    })
    .clone()
}

/// [`probe`], started as user `uid` (the tests run as root; some limits bind other users only).
fn probe_as(uid: Option<u32>, spec: Option<&SandboxSpec>, action: &str, arg: &str) -> String {
    use std::os::unix::process::CommandExt;
    let mut cmd = match spec {
        Some(spec) => {
            let apiary = if uid.is_some() { apiary_for_others() } else { PathBuf::from(env!("CARGO_BIN_EXE_apiary")) };
            let mut c = Command::new(apiary);
            c.args(["__sandbox-exec", "--spec", &serde_json::to_string(spec).unwrap(), "--", PYTHON]);
            c
        }
        None => Command::new(PYTHON),
    };
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid).current_dir("/");
    }
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

/// A copy of `id` owned by `nobody` with the setuid bit: run by root outside, it reports
/// `euid=65534`; the sandbox must not honour the bit.
fn setuid_id(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("id-setuid");
    std::fs::copy("/usr/bin/id", &path).unwrap();
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o4755)).unwrap();
    path
}

#[test]
fn privileges_cannot_be_raised() {
    let d = dirs();
    let spec = spec_for(&d, "");
    // Capabilities: root outside holds them (the control); inside there are none, for good.
    let outside = probe(None, "caps", "-");
    assert!(outside.starts_with("OK CapEff=") && !outside.contains("CapEff=0000000000000000"), "control: {outside}");
    assert_eq!(probe(Some(&spec), "caps", "-"), "OK CapEff=0000000000000000 NoNewPrivs=1");

    // A setuid binary: honoured outside, inert inside (no_new_privs).
    let id = setuid_id(&d.readable);
    let id = id.to_str().unwrap();
    assert!(probe(None, "exec", id).contains("euid=65534"), "control: the setuid bit works outside");
    let inside = probe(Some(&spec), "exec", id);
    assert!(inside.starts_with("OK uid=") && !inside.contains("euid="), "{inside}");

    // `unshare -r`: a new user namespace with uid 0 mapped works outside, is refused inside.
    assert_eq!(probe(None, "userns", "-"), "OK mapped", "control");
    assert_eq!(probe(Some(&spec), "userns", "-"), "DENIED unshare EPERM");
    // Rewriting the sandbox's own uid_map (to map every host uid) is refused.
    assert_eq!(probe(Some(&spec), "uid_map", "-"), "DENIED EPERM");

    // A CAP_SYS_ADMIN action: sethostname works for root in a UTS namespace of its own.
    assert_eq!(probe(None, "hostname", "own-uts"), "OK renamed", "control");
    assert_eq!(probe(Some(&spec), "hostname", "-"), "DENIED EPERM");
}

#[test]
fn a_fork_loop_stops_at_the_process_limit_and_the_host_is_unaffected() {
    // The kernel never counts uid 0 against RLIMIT_NPROC (root's user is exempt), and these
    // tests run as root: the loop runs as `nobody`, as a server runs for a normal user. The
    // default limit is 4096 processes; 64 keeps the test light on a shared machine.
    const NOBODY: Option<u32> = Some(65534);
    let spec = SandboxSpec { max_processes: 64, ..SandboxSpec::from_profile(&PermissionProfile::none(), false) };
    assert_eq!(probe_as(NOBODY, None, "fork", "200"), "OK 200", "control: outside, 200 forks work");
    let out = probe_as(NOBODY, Some(&spec), "fork", "200");
    let forked: usize = out.strip_prefix("DENIED EAGAIN ").unwrap_or_else(|| panic!("{out}")).parse().unwrap();
    assert!(forked < 64, "{out}");
    // The limit is the sandbox's own, fixed: it cannot be raised from inside.
    assert_eq!(probe_as(NOBODY, Some(&spec), "raise-nproc", "-"), "DENIED EPERM 64");
    // The host is unaffected: the same user still starts processes, and none of the loop's are left.
    assert_eq!(probe_as(NOBODY, None, "fork", "10"), "OK 10");
    assert!(Command::new("true").status().unwrap().success());
    let _ = std::fs::remove_dir_all(apiary_for_others().parent().unwrap());
}

#[test]
fn an_allocation_past_the_memory_limit_fails_inside() {
    let d = dirs();
    let spec = spec_for(&d, "");
    assert_eq!(spec.max_memory, Some(apiary_runtime::sandbox::DEFAULT_MAX_MEMORY), "on by default");
    let spec = SandboxSpec { max_memory: Some(256 << 20), ..spec };
    assert_eq!(probe(None, "alloc", "512"), "OK allocated 512", "control");
    assert_eq!(probe(Some(&spec), "alloc", "512"), "DENIED ENOMEM");
    assert_eq!(probe(Some(&spec), "alloc", "64"), "OK allocated 64", "allowed: below the limit");
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

#[test]
fn an_http_server_under_profile_none_is_reached_through_its_proxy_only() {
    let apiary = Apiary::new();
    let server = testkit_server().to_string_lossy().into_owned();
    let port = apiary_runtime::ports::free_port("127.0.0.1").unwrap();
    let (port_arg, listen) = (port.to_string(), format!("127.0.0.1:{port}"));
    let url = apiary.run(&[
        "run",
        "--name",
        "h",
        "--transport",
        "streamable-http",
        "--target-port",
        &port_arg,
        "--permission-profile",
        "none",
        "--",
        &server,
        "--http",
        &listen,
    ]);
    let url = url.ok().stdout.trim().to_owned();
    let tools = apiary.run(&["mcp", "list", "tools", "--server", &url]);
    assert!(tools.ok().stdout.contains("echo"), "{}", tools.stdout);
    let out = apiary.run(&["mcp", "call", "echo", "--server", &url, "--args", r#"{"text":"boxed http"}"#]);
    assert_eq!(out.ok().stdout.trim(), "boxed http");
    // It runs in the sandbox's pid namespace (init is 1, the server 2) ...
    let pid: u32 = apiary.run(&["mcp", "call", "pid", "--server", &url]).ok().stdout.trim().parse().unwrap();
    assert_eq!(pid, 2);
    // ... and its port is not on the host: only the proxy reaches it, through the socket.
    let direct = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(direct.is_err(), "the server's port answered on the host");
    let socket = apiary.state().upstream_socket_path("h").unwrap();
    assert!(socket.exists(), "{}", socket.display());
    let status = apiary.run(&["status", "h"]);
    assert!(status.ok().stdout.contains("sandbox (profile none: no network)"), "{}", status.stdout);
    // A restart gets a new sandbox, and the proxy reaches the new one.
    apiary.run(&["restart", "h"]).ok();
    let out = apiary.run(&["mcp", "call", "echo", "--server", "h", "--args", r#"{"text":"again"}"#]);
    assert_eq!(out.ok().stdout.trim(), "again");

    apiary.run(&["rm", "h"]).ok();
    assert!(!socket.exists(), "rm leaves the socket behind");
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
}
