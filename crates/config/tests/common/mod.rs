//! Shared fixtures for the config crate's integration tests.
#![allow(dead_code)]

use apiary_config::{ConfigError, RunConfig, Source, ValidationErrors};

/// A valid configuration to mutate in tests.
pub fn base() -> RunConfig {
    RunConfig::new("everything", Source::npx("@modelcontextprotocol/server-everything"))
}

/// Validates and returns the errors, failing the test if there are none.
pub fn errors_of(cfg: &RunConfig) -> ValidationErrors {
    match cfg.validate() {
        Ok(()) => panic!("expected validation errors for {cfg:#?}"),
        Err(e) => e,
    }
}

/// Asserts that validation reports exactly one error, at `path`, whose message contains `needle`,
/// and that the displayed text starts with the path.
pub fn assert_only_error(cfg: &RunConfig, path: &str, needle: &str) {
    let errs = errors_of(cfg);
    assert_eq!(errs.len(), 1, "expected one error at {path}, got:\n{errs}");
    let e = &errs.errors()[0];
    assert_eq!(e.path, path, "wrong path; error was: {e}");
    assert!(e.message.contains(needle), "message for {path} should contain {needle:?}: {e}");
    assert!(errs.to_string().starts_with(&format!("{path}: ")), "{errs}");
}

/// Asserts the configuration is valid, printing the errors if not.
pub fn assert_valid(cfg: &RunConfig) {
    if let Err(e) = cfg.validate() {
        panic!("expected valid, got:\n{e}");
    }
}

/// The parse error of `result`, with its path and message.
pub fn parse_err(result: Result<RunConfig, ConfigError>) -> (String, String, String) {
    match result {
        Ok(c) => panic!("expected a parse error, got {c:#?}"),
        Err(ConfigError::Parse { path, message, .. }) => {
            let shown = ConfigError::Parse {
                format: apiary_config::Format::Json,
                path: path.clone(),
                message: message.clone(),
                line: None,
                column: None,
            }
            .to_string();
            (path, message, shown)
        }
        Err(other) => panic!("expected a parse error, got {other:?} ({other})"),
    }
}

/// A minimal YAML document with `extra` appended at top level.
pub fn yaml_with(extra: &str) -> String {
    format!(
        "schemaVersion: v1\nname: everything\nsource:\n  package:\n    ecosystem: npx\n    name: \"@modelcontextprotocol/server-everything\"\n{extra}"
    )
}
