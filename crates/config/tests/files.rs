//! Reading files (by extension or by sniffing), the size cap, I/O errors, and atomic writes.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::os::unix::fs::PermissionsExt;

use apiary_config::{ConfigError, MAX_FILE_BYTES, RunConfig};
use common::base;

fn sample() -> RunConfig {
    let mut c = base();
    c.env.insert("API_KEY".into(), "s3cret".into());
    c.args = vec!["--port".into(), "0".into()];
    c.proxy.port = 8080;
    c
}

#[test]
fn write_atomic_then_from_path_round_trips_in_each_format() {
    let dir = tempfile::tempdir().unwrap();
    let c = sample();
    for name in ["c.json", "c.yaml", "c.yml", "c.conf"] {
        let path = dir.path().join(name);
        c.write_atomic(&path).unwrap();
        assert_eq!(RunConfig::from_path(&path).unwrap(), c, "{name}");
        let text = std::fs::read_to_string(&path).unwrap();
        let looks_json = text.starts_with('{');
        assert_eq!(looks_json, !name.ends_with(".yaml") && !name.ends_with(".yml"), "{name}: {text}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} may hold secrets");
    }
    // Overwrite in place, and no temporary files are left behind.
    let mut changed = c.clone();
    changed.proxy.port = 9090;
    changed.write_atomic(dir.path().join("c.json")).unwrap();
    assert_eq!(RunConfig::from_path(dir.path().join("c.json")).unwrap().proxy.port, 9090);
    let mut names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["c.conf", "c.json", "c.yaml", "c.yml"]);
}

#[test]
fn unknown_extension_is_sniffed() {
    let dir = tempfile::tempdir().unwrap();
    let c = sample();
    let as_json = dir.path().join("runconfig");
    std::fs::write(&as_json, format!("  \n{}", c.to_json_pretty().unwrap())).unwrap();
    assert_eq!(RunConfig::from_path(&as_json).unwrap(), c);
    let as_yaml = dir.path().join("runconfig.txt");
    std::fs::write(&as_yaml, c.to_yaml().unwrap()).unwrap();
    assert_eq!(RunConfig::from_path(&as_yaml).unwrap(), c);
}

#[test]
fn extension_wins_over_content() {
    // YAML text in a .json file is reported as a JSON error, not silently read as YAML.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.json");
    std::fs::write(&path, sample().to_yaml().unwrap()).unwrap();
    let err = RunConfig::from_path(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { format: apiary_config::Format::Json, .. }), "{err:?}");
}

#[test]
fn missing_file_is_an_io_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.yaml");
    let err = RunConfig::from_path(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
    assert!(err.to_string().starts_with(&path.display().to_string()), "{err}");
}

#[test]
fn oversized_file_is_refused_without_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    let mut text = common::yaml_with("");
    text.push_str(&"#".repeat(usize::try_from(MAX_FILE_BYTES).unwrap()));
    std::fs::write(&path, text).unwrap();
    let err = RunConfig::from_path(&path).unwrap_err();
    assert!(matches!(err, ConfigError::TooLarge { limit, .. } if limit == MAX_FILE_BYTES), "{err:?}");
}

#[test]
fn write_into_missing_directory_fails_with_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = sample().write_atomic(dir.path().join("no/such/dir/c.json")).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
}
