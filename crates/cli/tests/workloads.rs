//! The `apiary` binary on saved workload state, without a proxy serving: validation messages,
//! export, list, status, logs, rm, stale records, and `stop` of processes found by pid.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::time::Duration;

use apiary_config::{RunConfig, Source};
use apiary_runtime::pid::ProcRef;
use apiary_runtime::state::{WorkloadRecord, WorkloadState};
use support::{Apiary, Spawned};

fn saved(apiary: &Apiary, name: &str) -> RunConfig {
    let config = RunConfig::builder(name, Source::npx("@scope/some-server@1.0"))
        .args(["--flag"])
        .env("TOKEN", "x")
        .proxy_port(18080)
        .build()
        .unwrap();
    apiary.state().save_config(&config).unwrap();
    config
}

/// A record claiming `proxy` serves `name`, with `children`.
fn record(apiary: &Apiary, config: &RunConfig, proxy: ProcRef, children: Vec<ProcRef>) {
    let mut rec = WorkloadRecord::stopped(config);
    rec.state = WorkloadState::Running;
    rec.proxy = Some(proxy);
    rec.children = children;
    rec.url = Some("http://127.0.0.1:18080/mcp".into());
    rec.listen_addr = Some("127.0.0.1:18080".into());
    apiary.state().save_record(&rec).unwrap();
}

#[test]
fn invalid_flags_fail_with_one_line_naming_the_field_and_save_nothing() {
    let apiary = Apiary::new();
    let out = apiary.run(&["run", "--name", "Bad_Name", "--", "sh"]);
    let err = out.failed();
    assert_eq!(out.code, Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: invalid configuration: name (--name):"), "{err}");
    let out = apiary.run(&["run", "--name", "t", "-e", "1BAD=x", "--", "sh"]);
    assert!(out.failed().contains("env.1BAD (--env)"), "{}", out.stderr);
    assert!(apiary.state().names().unwrap_or_default().is_empty());

    // An image needs a container engine; with none where DOCKER_HOST points, the error says so
    // (tests/containers.rs runs images against a real one).
    let missing = apiary.scratch().join("no-engine.sock");
    let child = apiary
        .command(&["run", "docker.io/mcp/fetch"])
        .env("DOCKER_HOST", format!("unix://{}", missing.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = support::finish(child, support::COMMAND_LIMIT, "apiary run IMAGE");
    assert!(out.failed().contains("no container engine answers"), "{}", out.stderr);
    // clap's own refusal of a port that does not fit names the flag too.
    let out = apiary.run(&["run", "--proxy-port", "70000", "npx://x"]);
    assert!(out.failed().contains("--proxy-port"), "{}", out.stderr);
}

#[test]
fn from_config_errors_name_the_field_path() {
    let apiary = Apiary::new();
    let file = apiary.scratch().join("bad.json");
    std::fs::write(
        &file,
        r#"{"schemaVersion":"v1","name":"t","source":{"package":{"ecosystem":"npx","name":"x"}},"proxy":{"port":70000}}"#,
    )
    .unwrap();
    let out = apiary.run(&["run", "--from-config", file.to_str().unwrap()]);
    let err = out.failed();
    assert!(err.contains("proxy.port"), "{err}");
    assert!(err.contains("bad.json"), "{err}");
    let out = apiary.run(&["run", "--from-config", file.to_str().unwrap(), "--name", "x"]);
    assert!(out.failed().contains("--name cannot be combined"), "{}", out.stderr);
}

#[test]
fn export_writes_the_saved_run_config() {
    let apiary = Apiary::new();
    let config = saved(&apiary, "t");
    let out = apiary.run(&["export", "t"]);
    out.ok();
    assert_eq!(RunConfig::from_json_str(&out.stdout).unwrap(), config);

    let path = apiary.scratch().join("t.yaml");
    apiary.run(&["export", "t", path.to_str().unwrap()]).ok();
    assert_eq!(RunConfig::from_path(&path).unwrap(), config);
    assert!(std::fs::read_to_string(&path).unwrap().contains("schemaVersion: v1"));

    // A package has no image a cluster could pull: refused with the reason.
    let out = apiary.run(&["export", "t", "--format", "k8s"]);
    assert!(out.failed().contains("package source, which has no container image"), "{}", out.stderr);
    let out = apiary.run(&["export", "nope"]);
    assert!(out.failed().contains("no workload named \"nope\""), "{}", out.stderr);
}

#[test]
fn export_k8s_writes_the_manifests_of_an_image_workload() {
    let apiary = Apiary::new();
    let mut config = RunConfig::builder("fetch", Source::image("ghcr.io/stackloklabs/gofetch/server:latest"))
        .args(["--verbose"])
        .build()
        .unwrap();
    config.secrets.push(apiary_config::SecretRef { name: "API_KEY".into(), target: "KEY".into() });
    config.policy.tools.filter = vec!["fetch".into()];
    apiary.state().save_config(&config).unwrap();

    let out = apiary.run(&["export", "fetch", "--format", "k8s"]);
    let yaml = out.ok().stdout.clone();
    let kinds: Vec<&str> = yaml.lines().filter_map(|l| l.strip_prefix("kind: ")).collect();
    assert_eq!(kinds, ["MCPToolConfig", "MCPServer"], "{yaml}");
    assert_eq!(yaml.matches("---\n").count(), 1, "{yaml}");
    assert!(yaml.contains("image: ghcr.io/stackloklabs/gofetch/server:latest"), "{yaml}");
    assert!(yaml.contains("toolConfigRef:"), "{yaml}");
    // The Secret to create is said on stderr, never the value.
    assert!(out.stderr.contains("create Secret api-key"), "{}", out.stderr);

    let path = apiary.scratch().join("fetch.yaml");
    apiary.run(&["export", "fetch", "--format", "k8s", path.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), yaml);
}

#[test]
fn logs_prune_deletes_only_the_logs_of_workloads_that_are_gone() {
    let apiary = Apiary::new();
    saved(&apiary, "keep");
    // `x.proxy.log` is also the server log of a workload named `x.proxy`: kept while it lives.
    saved(&apiary, "x.proxy");
    let state = apiary.state();
    let write = |p: std::path::PathBuf| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "line\n").unwrap();
        p
    };
    let kept = [
        write(state.log_path("keep").unwrap()),
        write(state.proxy_log_path("keep").unwrap()),
        write(state.log_path("x.proxy").unwrap()),
    ];
    let gone = [
        write(state.log_path("gone").unwrap()),
        write(state.proxy_log_path("gone").unwrap()),
        write(apiary_runtime::log::rotated_path(&state.log_path("gone").unwrap())),
    ];
    let other = write(state.log_path("keep").unwrap().with_file_name("notes.txt"));

    let out = apiary.run(&["logs", "prune"]);
    let text = out.ok().stdout.clone();
    assert!(text.ends_with("3 log file(s) of removed workloads deleted\n"), "{text}");
    for p in &gone {
        assert!(!p.exists(), "{} left", p.display());
        assert!(text.contains(&p.display().to_string()), "{text}");
    }
    for p in kept.iter().chain([&other]) {
        assert!(p.exists(), "{} deleted", p.display());
    }
    // Nothing left to prune; a workload named `prune` makes the command ambiguous.
    assert!(apiary.run(&["logs", "prune"]).ok().stdout.starts_with("0 log file(s)"));
    saved(&apiary, "prune");
    assert!(apiary.run(&["logs", "prune"]).failed().contains("ambiguous"));
}

#[test]
fn list_status_and_rm_of_a_stopped_workload() {
    let apiary = Apiary::new();
    saved(&apiary, "t");
    let out = apiary.run(&["list"]);
    assert_eq!(out.ok().stdout, "No MCP servers found\n");
    let out = apiary.run(&["ls", "--all"]);
    let text = &out.ok().stdout;
    assert!(text.starts_with("NAME"), "{text}");
    let row = text.lines().nth(1).unwrap();
    assert!(row.starts_with("t "), "{row}");
    assert!(row.contains("npx://@scope/some-server@1.0"), "{row}");
    assert!(row.contains("stopped"), "{row}");

    let out = apiary.run(&["list", "-a", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out.ok().stdout).unwrap();
    assert_eq!(v[0]["name"], "t");
    assert_eq!(v[0]["state"], "stopped");
    assert_eq!(v[0]["transport"], "stdio");

    let out = apiary.run(&["status", "t"]);
    assert!(out.ok().stdout.contains("Status:      stopped"), "{}", out.stdout);
    let out = apiary.run(&["status", "t", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out.ok().stdout).unwrap();
    assert_eq!(v["state"], "stopped");

    // Stopping a stopped workload is fine and quiet.
    let out = apiary.run(&["stop", "t"]);
    assert_eq!(out.ok().stdout, "");

    std::fs::write(apiary.state().log_path("t").unwrap(), "server says hi\n").unwrap();
    std::fs::write(apiary.state().proxy_log_path("t").unwrap(), "proxy says hi\n").unwrap();
    assert_eq!(apiary.run(&["logs", "t"]).ok().stdout, "server says hi\n");
    assert_eq!(apiary.run(&["logs", "t", "--proxy"]).ok().stdout, "proxy says hi\n");

    apiary.run(&["rm", "t"]).ok();
    for path in [
        apiary.state().runconfig_path("t").unwrap(),
        apiary.state().log_path("t").unwrap(),
        apiary.state().proxy_log_path("t").unwrap(),
    ] {
        assert!(!path.exists(), "{} survived rm", path.display());
    }
    let out = apiary.run(&["rm", "t"]);
    assert!(out.failed().contains("no workload named \"t\""), "{}", out.stderr);
    let out = apiary.run(&["status", "t"]);
    assert!(out.failed().contains("no workload named"), "{}", out.stderr);
    let out = apiary.run(&["logs", "t"]);
    assert!(out.failed().contains("no workload named"), "{}", out.stderr);
}

#[test]
fn a_record_whose_proxy_died_shows_as_error_not_running() {
    let apiary = Apiary::new();
    let config = saved(&apiary, "t");
    let mut gone = Spawned::group_leader("true", &[]);
    assert!(gone.exited_within(Duration::from_secs(10)));
    record(&apiary, &config, gone.proc_ref, vec![]);

    assert_eq!(apiary.run(&["list"]).ok().stdout, "No MCP servers found\n");
    let out = apiary.run(&["status", "t"]);
    let text = &out.ok().stdout;
    assert!(text.contains("Status:      error"), "{text}");
    assert!(!text.contains("Proxy PID"), "{text}");
    assert!(!text.contains("URL:"), "{text}");
    let out = apiary.run(&["mcp", "list", "--server", "t"]);
    assert!(out.failed().contains("is not running"), "{}", out.stderr);
}

#[test]
fn run_refuses_a_name_that_is_running() {
    let apiary = Apiary::new();
    let config = saved(&apiary, "t");
    let proxy = Spawned::group_leader("sleep", &["300"]);
    record(&apiary, &config, proxy.proc_ref, vec![]);
    let out = apiary.run(&["run", "--name", "t", "--", "sh"]);
    let err = out.failed();
    assert!(err.contains("already running at http://127.0.0.1:18080/mcp"), "{err}");
    let out = apiary.run(&["list"]);
    assert!(out.ok().stdout.contains("running"), "{}", out.stdout);
}

#[test]
fn stop_ends_the_proxy_by_pid_and_sweeps_leftover_server_groups() {
    let apiary = Apiary::new();
    let config = saved(&apiary, "t");
    let mut proxy = Spawned::group_leader("sleep", &["300"]);
    // A server that left a grandchild behind, in its own group as the launcher makes them.
    let mut server = Spawned::group_leader("sh", &["-c", "sleep 300 & sleep 300; wait"]);
    let server_group = server.proc_ref;
    record(&apiary, &config, proxy.proc_ref, vec![server.proc_ref]);

    apiary.run(&["stop", "t"]).ok();
    assert!(proxy.exited_within(Duration::from_secs(10)));
    assert!(server.exited_within(Duration::from_secs(10)));
    assert!(!server_group.group_exists(), "the server's grandchild survived");
    let rec = apiary.state().load_record("t").unwrap().unwrap();
    assert_eq!(rec.state, WorkloadState::Stopped);
    assert!(rec.proxy.is_none());
    assert!(rec.children.is_empty());
}

#[test]
fn stop_kills_a_proxy_that_ignores_sigterm_after_the_timeout() {
    let apiary = Apiary::new();
    let config = saved(&apiary, "t");
    let mut proxy = Spawned::group_leader_piped("sh", &["-c", "trap '' TERM; echo ready; while :; do sleep 1; done"]);
    // Signal it only once its trap is in place.
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(proxy.child.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line, "ready\n");
    record(&apiary, &config, proxy.proc_ref, vec![]);
    apiary.run(&["stop", "t", "--timeout", "1"]).ok();
    assert!(proxy.exited_within(Duration::from_secs(10)));
    let status = proxy.child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9));
}

#[test]
fn stop_all_and_rm_all() {
    let apiary = Apiary::new();
    let a = saved(&apiary, "a");
    saved(&apiary, "b");
    let mut proxy = Spawned::group_leader("sleep", &["300"]);
    record(&apiary, &a, proxy.proc_ref, vec![]);
    apiary.run(&["stop", "--all"]).ok();
    assert!(proxy.exited_within(Duration::from_secs(10)));
    apiary.run(&["rm", "--all"]).ok();
    assert!(apiary.state().names().unwrap().is_empty());
    let out = apiary.run(&["stop"]);
    assert!(out.failed().contains("required"), "{}", out.stderr);
}

#[test]
fn version_prints_the_package_version() {
    let apiary = Apiary::new();
    let want = format!("apiary {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(apiary.run(&["version"]).ok().stdout, want);
    assert_eq!(apiary.run(&["--version"]).ok().stdout, want);
    let out = apiary.run(&["version", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out.ok().stdout).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
}

#[test]
fn logs_follow_prints_appended_lines_across_a_rotation() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let apiary = Apiary::new();
    saved(&apiary, "t");
    let log = apiary.state().log_path("t").unwrap();
    std::fs::write(&log, "one\n").unwrap();
    let mut child = apiary.command(&["logs", "t", "-f"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let next = || rx.recv_timeout(Duration::from_secs(20)).expect("a line within 20 s");
    assert_eq!(next(), "one");
    std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(b"two\n").unwrap();
    assert_eq!(next(), "two");
    // Rotation: the file is renamed away and a new, shorter one started.
    std::fs::rename(&log, apiary_runtime::log::rotated_path(&log)).unwrap();
    std::fs::write(&log, "3\n").unwrap();
    assert_eq!(next(), "3");
    ProcRef::capture(child.id()).signal(rustix::process::Signal::INT);
    let out = support::finish(child, Duration::from_secs(20), "apiary logs -f");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}
