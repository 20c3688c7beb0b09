//! `apiary run`'s authentication and policy flags, as a user types them: bad policy, audit
//! and override files are refused before anything runs, with the file, line and reason; flag
//! combinations that cannot work are refused; and a workload run with `--authz-config` and
//! `--tools` serves only what they allow.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use support::Apiary;

/// Runs `apiary run` with `args` and a harmless command source; returns stderr of the failure.
fn refused(apiary: &Apiary, args: &[&str]) -> String {
    let mut all = vec!["run", "--name", "t"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--", "sh"]);
    let out = apiary.run(&all);
    let err = out.failed().to_owned();
    assert!(apiary.state().names().unwrap_or_default().is_empty(), "nothing may be saved: {err}");
    err
}

#[test]
fn a_malformed_policy_file_names_the_file_the_line_and_the_reason() {
    let apiary = Apiary::new();
    let file = apiary.scratch().join("authz.json");
    std::fs::write(
        &file,
        "{\n  \"version\": \"1.0\",\n  \"type\": \"cedarv1\",\n  \"cedar\": {\n    \"policies\": [\n      \"permit(principal, action, resource);\",\n      \"permit(principal, action == , resource);\"\n    ]\n  }\n}\n",
    )
    .unwrap();
    let err = refused(&apiary, &["--authz-config", file.to_str().unwrap()]);
    assert!(err.contains("authz.json"), "{err}");
    assert!(err.contains("policy 1") && err.contains("line 1"), "{err}");

    std::fs::write(&file, "{\n  \"version\": \"1.0\",\n  \"type\": \"cedarv1\",\n  \"cedar\": {,\n}\n").unwrap();
    let err = refused(&apiary, &["--authz-config", file.to_str().unwrap()]);
    assert!(err.contains("authz.json") && err.contains("line 4"), "{err}");

    std::fs::write(
        &file,
        r#"{"version":"1.0","type":"opa","cedar":{"policies":["permit(principal,action,resource);"]}}"#,
    )
    .unwrap();
    let err = refused(&apiary, &["--authz-config", file.to_str().unwrap()]);
    assert!(err.contains("opa"), "{err}");
}

#[test]
fn malformed_audit_and_override_files_name_the_file_and_the_line() {
    let apiary = Apiary::new();
    let audit = apiary.scratch().join("audit.yaml");
    std::fs::write(&audit, "component: x\nmax_data_size: lots\n").unwrap();
    let err = refused(&apiary, &["--audit-config", audit.to_str().unwrap()]);
    assert!(err.contains("audit.yaml") && err.contains(":2:"), "{err}");

    let tools = apiary.scratch().join("tools.json");
    std::fs::write(&tools, "{\"toolsOverride\": {\n  \"echo\": {\"name\": 7}\n}}\n").unwrap();
    let err = refused(&apiary, &["--tools-override", tools.to_str().unwrap()]);
    assert!(err.contains("tools.json") && err.contains(":2:"), "{err}");

    let err = refused(&apiary, &["--authz-config", "/nonexistent/authz.json"]);
    assert!(err.contains("/nonexistent/authz.json"), "{err}");
}

#[test]
fn flag_combinations_that_cannot_work_are_refused_before_anything_runs() {
    let apiary = Apiary::new();
    let err = refused(&apiary, &["--oidc-audience", "x"]);
    assert!(err.contains("--oidc-audience needs --oidc-issuer"), "{err}");
    let err = refused(&apiary, &["--resource-url", "https://mcp.example.com/mcp"]);
    assert!(err.contains("--resource-url needs --oidc-issuer"), "{err}");
    let err = refused(&apiary, &["--oidc-issuer", "http://idp.example"]);
    assert!(err.contains("https"), "a plain-HTTP issuer needs --oidc-insecure-allow-http: {err}");

    let cfg = apiary.scratch().join("run.json");
    std::fs::write(&cfg, r#"{"schemaVersion":"v1","name":"t","source":{"command":{"program":"sh"}}}"#).unwrap();
    let out = apiary.run(&["run", "--from-config", cfg.to_str().unwrap(), "--tools", "echo"]);
    assert!(out.failed().contains("--tools cannot be combined"), "{}", out.stderr);

    // A RunConfig whose policy is invalid is refused the same way.
    std::fs::write(
        &cfg,
        r#"{"schemaVersion":"v1","name":"t","source":{"command":{"program":"sh"}},"policy":{"authz":{"version":"1.0","type":"cedarv1","cedar":{"policies":["nonsense"]}}}}"#,
    )
    .unwrap();
    let out = apiary.run(&["run", "--from-config", cfg.to_str().unwrap()]);
    let err = out.failed();
    assert!(err.contains("run.json") && err.contains("policy.authz"), "{err}");
}

#[test]
fn help_lists_the_policy_flags() {
    let apiary = Apiary::new();
    let out = apiary.run(&["run", "--help"]);
    for flag in [
        "--oidc-issuer",
        "--oidc-audience",
        "--oidc-jwks-url",
        "--oidc-introspection-url",
        "--oidc-client-id",
        "--oidc-client-secret",
        "--oidc-scopes",
        "--oidc-required-scopes",
        "--resource-url",
        "--authz-config",
        "--enable-audit",
        "--audit-config",
        "--tools",
        "--tools-override",
    ] {
        assert!(out.stdout.contains(flag), "{flag} missing from `apiary run --help`");
    }
}
