//! The egress allow-list, end to end against the real `apiary __sandbox-exec` helper and kernel:
//! host HTTP and echo servers on 127.0.0.1, the egress proxy on a Unix socket, a Python probe in
//! the sandbox using `HTTP_PROXY` as real clients do. Each refused row has a control. Then the
//! fixture MCP server runs behind `apiary run` with an allow-list profile and still answers.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};

use apiary_config::PermissionProfile;
use apiary_runtime::sandbox::SandboxSpec;
use apiary_runtime::sandbox::bridge::EgressBridge;
use apiary_runtime::sandbox::egress::{AllowList, EGRESS_PORT, EgressLimits, EgressProxy};
use apiary_testkit::binaries::testkit_server;
use support::Apiary;

const PYTHON: &str = "/usr/bin/python3";

/// Each action prints one line: `OK …`, `HTTP <status>` or `DENIED <errno name>`.
const PROBE: &str = r#"
import errno, os, socket, sys, urllib.error, urllib.request
action, arg = sys.argv[1], sys.argv[2]
try:
    if action == "get":
        with urllib.request.urlopen(arg, timeout=10) as r:
            print("OK", r.status, r.read().decode())
    elif action == "connect":
        socket.create_connection(("127.0.0.1", int(arg)), timeout=5).close()
        print("OK connected")
    elif action == "tunnel":
        proxy = os.environ["HTTPS_PROXY"].rsplit(":", 1)
        s = socket.create_connection((proxy[0].split("//")[1], int(proxy[1])), timeout=10)
        s.sendall(("CONNECT 127.0.0.1:%s HTTP/1.1\r\n\r\n" % arg).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            if not chunk: break
            head += chunk
        status = head.split(b" ")[1].decode() if head else "none"
        if status != "200":
            print("HTTP", status)
        else:
            s.sendall(b"ping")
            print("OK", s.recv(4).decode())
except urllib.error.HTTPError as e:
    print("HTTP", e.code)
except OSError as e:
    print("DENIED", errno.errorcode.get(e.errno, str(e.errno)))
"#;

fn probe(spec: Option<&SandboxSpec>, action: &str, arg: &str) -> String {
    let mut cmd = match spec {
        Some(spec) => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_apiary"));
            c.args(["__sandbox-exec", "--spec", &serde_json::to_string(spec).unwrap(), "--", PYTHON]);
            c
        }
        None => Command::new(PYTHON),
    };
    let proxy = format!("http://127.0.0.1:{EGRESS_PORT}");
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
        cmd.env(name, &proxy);
    }
    // The host servers live on 127.0.0.1, which NO_PROXY would send direct: ask the proxy.
    cmd.env_remove("NO_PROXY").env_remove("no_proxy");
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

/// Serves connections on a thread with `reply(request bytes)`; the thread ends with the process.
fn server(reply: fn(u16, &[u8]) -> Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&reply(port, &buf[..n])).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn http_reply(port: u16, _req: &[u8]) -> Vec<u8> {
    let body = format!("hello from {port}");
    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).into_bytes()
}

fn echo_reply(_port: u16, req: &[u8]) -> Vec<u8> {
    req.to_vec()
}

fn profile_file(dir: &std::path::Path, json: &str) -> std::path::PathBuf {
    let path = dir.join("profile.json");
    std::fs::write(&path, json).unwrap();
    path
}

#[test]
fn an_allow_list_profile_reaches_exactly_its_host_and_ports_through_the_proxy() {
    let (a, b, echo) = (server(http_reply), server(http_reply), server(echo_reply));
    let dir = tempfile::tempdir().unwrap();
    let json =
        format!(r#"{{"network": {{"outbound": {{"allow_host": ["127.0.0.1"], "allow_port": [{a}, {echo}]}}}}}}"#);
    let profile = PermissionProfile::from_arg(profile_file(dir.path(), &json).to_str().unwrap()).unwrap();
    let out = profile.network.as_ref().unwrap().outbound.as_ref().unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let _enter = rt.enter();
    let proxy = EgressProxy::start_private(AllowList::from_outbound(out), EgressLimits::default()).unwrap();
    let mut spec = SandboxSpec::from_profile(&profile, false);
    assert!(!spec.host_network);
    spec.egress = Some(EgressBridge { socket: proxy.socket().to_path_buf(), port: EGRESS_PORT });

    // The allowed host:port answers through the proxy.
    assert_eq!(probe(Some(&spec), "get", &format!("http://127.0.0.1:{a}/x")), format!("OK 200 hello from {a}"));
    // The same host on another port: refused by the proxy; the control reaches it directly.
    assert_eq!(probe(Some(&spec), "get", &format!("http://127.0.0.1:{b}/x")), "HTTP 403");
    assert_eq!(probe(None, "connect", &b.to_string()), "OK connected", "control");
    // A host not on the list.
    assert_eq!(probe(Some(&spec), "get", &format!("http://not-listed.test:{a}/x")), "HTTP 403");
    // Around the proxy there is no way out, not even to the allowed port.
    assert!(probe(Some(&spec), "connect", &a.to_string()).starts_with("DENIED"), "direct connect got out");
    assert_eq!(probe(None, "connect", &a.to_string()), "OK connected", "control");
    // A CONNECT tunnel to an allowed port carries raw bytes; to another port it is refused.
    assert_eq!(probe(Some(&spec), "tunnel", &echo.to_string()), "OK ping");
    assert_eq!(probe(Some(&spec), "tunnel", &b.to_string()), "HTTP 403");
}

#[test]
fn the_fixture_server_runs_with_an_allow_list_profile_and_answers() {
    let apiary = Apiary::new();
    let server = testkit_server().to_string_lossy().into_owned();
    let path = profile_file(
        apiary.scratch(),
        r#"{"network": {"outbound": {"allow_host": [".example.test"], "allow_port": [443]}}}"#,
    );
    let url =
        apiary.run(&["run", "--name", "e", "--permission-profile", path.to_str().unwrap(), "--", &server, "--stdio"]);
    let url = url.ok().stdout.trim().to_owned();
    let out = apiary.run(&["mcp", "call", "echo", "--server", &url, "--args", r#"{"text":"allowed"}"#]);
    assert_eq!(out.ok().stdout.trim(), "allowed");
    let status = apiary.run(&["status", "e"]);
    assert!(status.ok().stdout.contains("outbound allow-list through the egress proxy"), "{}", status.stdout);
    apiary.run(&["rm", "--all"]).ok();
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
}
