//! `apiary group` and `-g GROUP` with the real binary and the fixture MCP server: two groups with
//! one server each, `list/stop/restart -g`, `group rm` refused while the group holds workloads and
//! done with `--with-workloads`, unknown groups, name rules, and the help texts.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use apiary_testkit::binaries::testkit_server;
use serde_json::Value;
use support::Apiary;

fn server() -> String {
    testkit_server().to_string_lossy().into_owned()
}

fn state_of(apiary: &Apiary, name: &str) -> String {
    let out = apiary.run(&["status", name, "--format", "json"]);
    let v: Value = serde_json::from_str(&out.ok().stdout).unwrap();
    v["state"].as_str().unwrap().to_owned()
}

fn listed(apiary: &Apiary, args: &[&str]) -> Vec<String> {
    let mut all = vec!["list", "--format", "json"];
    all.extend_from_slice(args);
    let v: Value = serde_json::from_str(&apiary.run(&all).ok().stdout).unwrap();
    v.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect()
}

fn group_counts(apiary: &Apiary) -> Vec<(String, u64)> {
    let v: Value = serde_json::from_str(&apiary.run(&["group", "list", "--format", "json"]).ok().stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|g| (g["name"].as_str().unwrap().to_owned(), g["workloads"].as_u64().unwrap()))
        .collect()
}

#[test]
fn two_groups_are_listed_stopped_restarted_and_removed_by_group() {
    let apiary = Apiary::new();
    let out = apiary.run(&["run", "--group", "team", "--name", "a", "--", &server(), "--stdio"]);
    assert!(out.failed().contains("apiary group create team"), "{}", out.stderr);
    assert!(apiary.state().names().unwrap().is_empty(), "a refused run saves nothing");

    apiary.run(&["group", "create", "team"]).ok();
    apiary.run(&["group", "create", "lab"]).ok();
    let url_a = apiary.run(&["run", "--group", "team", "--name", "a", "--", &server(), "--stdio"]).ok().stdout.clone();
    apiary.run(&["run", "--group", "lab", "--name", "b", "--", &server(), "--stdio"]).ok();
    assert_eq!(group_counts(&apiary), [("default".to_owned(), 0), ("lab".to_owned(), 1), ("team".to_owned(), 1)]);
    let text = apiary.run(&["group", "list"]).ok().stdout.clone();
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("team ") && l.split_whitespace().nth(1) == Some("1")), "{text}");

    assert_eq!(listed(&apiary, &["--group", "team"]), ["a"]);
    assert_eq!(listed(&apiary, &["-g", "lab"]), ["b"]);
    assert_eq!(listed(&apiary, &[]), ["a", "b"]);

    // stop -g stops that group only.
    apiary.run(&["stop", "-g", "team"]).ok();
    assert_eq!(state_of(&apiary, "a"), "stopped");
    assert_eq!(state_of(&apiary, "b"), "running");
    assert!(listed(&apiary, &["-g", "team"]).is_empty());
    assert_eq!(listed(&apiary, &["-g", "team", "--all"]), ["a"]);

    // start -g brings it back on its URL; restart -g gives it a new proxy.
    let out = apiary.run(&["start", "-g", "team"]);
    assert_eq!(out.ok().stdout, format!("a {url_a}"));
    assert_eq!(state_of(&apiary, "a"), "running");
    let pid = |apiary: &Apiary| {
        let v: Value = serde_json::from_str(&apiary.run(&["status", "a", "--format", "json"]).ok().stdout).unwrap();
        v["proxy"]["pid"].as_u64().unwrap()
    };
    let before = pid(&apiary);
    apiary.run(&["restart", "-g", "team"]).ok();
    assert_ne!(pid(&apiary), before);
    let out = apiary.run(&["mcp", "call", "echo", "--server", "a", "--args", r#"{"text":"hi"}"#]);
    assert_eq!(out.ok().stdout.trim(), "hi");

    // A group that holds workloads is not removed unless asked to take them along.
    let out = apiary.run(&["group", "rm", "team"]);
    let err = out.failed();
    assert!(err.contains("--with-workloads") && err.contains("a"), "{err}");
    assert_eq!(state_of(&apiary, "a"), "running");
    apiary.run(&["group", "rm", "team", "--with-workloads"]).ok();
    assert!(!apiary.state().has_config("a").unwrap());
    assert_eq!(apiary.state().names().unwrap(), ["b"]);
    assert_eq!(group_counts(&apiary), [("default".to_owned(), 0), ("lab".to_owned(), 1)]);

    // rm -g removes the workloads and keeps the (now empty) group.
    apiary.run(&["rm", "-g", "lab"]).ok();
    assert!(apiary.state().names().unwrap().is_empty());
    assert_eq!(group_counts(&apiary), [("default".to_owned(), 0), ("lab".to_owned(), 0)]);
    apiary.run(&["group", "rm", "lab"]).ok();
    assert_eq!(apiary.wait_no_processes(), Vec::<u32>::new());
}

#[test]
fn unknown_groups_bad_names_default_and_names_with_g_are_refused() {
    let apiary = Apiary::new();
    for args in [
        &["list", "-g", "nope"][..],
        &["stop", "-g", "nope"],
        &["rm", "-g", "nope"],
        &["start", "-g", "nope"],
        &["restart", "-g", "nope"],
        &["group", "rm", "nope"],
    ] {
        let out = apiary.run(args);
        assert!(out.failed().contains("group \"nope\" does not exist"), "{args:?}: {}", out.stderr);
    }
    for bad in ["Team", "_x", "a/b", "x-"] {
        let out = apiary.run(&["group", "create", bad]);
        assert!(out.failed().contains("is not a group name"), "{bad}: {}", out.stderr);
    }
    let out = apiary.run(&["run", "--group", "Bad", "--name", "t", "--", "sh"]);
    assert!(out.failed().contains("group (--group)"), "{}", out.stderr);

    apiary.run(&["group", "create", "team"]).ok();
    assert!(apiary.run(&["group", "create", "team"]).failed().contains("already exists"));
    assert!(apiary.run(&["group", "create", "default"]).failed().contains("\"default\" always exists"));
    assert!(apiary.run(&["group", "rm", "default"]).failed().contains("\"default\" always exists"));
    // The default group needs no creating.
    assert_eq!(apiary.run(&["list", "-g", "default"]).ok().stdout, "No MCP servers found\n");

    for args in [&["stop", "-g", "team", "x"][..], &["rm", "-g", "team", "x"], &["restart", "-g", "team", "x"]] {
        let out = apiary.run(args);
        assert!(out.failed().contains("cannot be used with"), "{args:?}: {}", out.stderr);
    }
    assert!(apiary.run(&["stop", "-g", "team", "--all"]).failed().contains("cannot be used with"));
    assert!(apiary.run(&["start", "-g", "team", "--foreground"]).failed().contains("cannot be used with"));
    assert!(apiary.run(&["start"]).failed().contains("required"));
    // An empty group stops and starts nothing, successfully.
    assert_eq!(apiary.run(&["stop", "-g", "team"]).ok().stdout, "");
    assert_eq!(apiary.run(&["start", "-g", "team"]).ok().stdout, "");
}

#[test]
fn help_texts_describe_groups() {
    let apiary = Apiary::new();
    let top = apiary.run(&["--help"]).ok().stdout.clone();
    assert!(top.contains("group") && top.contains("Manage groups of workloads"), "{top}");
    let help = apiary.run(&["group", "--help"]).ok().stdout.clone();
    for word in ["create", "list", "rm"] {
        assert!(help.contains(word), "{help}");
    }
    assert!(apiary.run(&["group", "rm", "--help"]).ok().stdout.contains("--with-workloads"));
    for cmd in ["list", "stop", "rm", "start", "restart"] {
        let text = apiary.run(&[cmd, "--help"]).ok().stdout.clone();
        assert!(text.contains("-g, --group <GROUP>"), "{cmd}: {text}");
    }
    let run_help = apiary.run(&["run", "--help"]).ok().stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(run_help.contains("create others with `apiary group create`"), "{run_help}");
}
