//! `apiary secret …` and `apiary run --secret` through the real binary, each test with its own
//! state directory: the encrypted store's life (setup, set from stdin, list, get, delete), a wrong
//! key or a corrupted file failing clearly, the passphrase and environment providers, and a
//! secret's value reaching a server's environment without landing in any state file or output.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use support::{Apiary, COMMAND_LIMIT, Out, finish};

/// `apiary ARGS` with `input` on stdin and extra environment.
fn run_with(apiary: &Apiary, args: &[&str], input: &str, env: &[(&str, &str)]) -> Out {
    let mut cmd = apiary.command(args);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for var in
        ["APIARY_SECRETS_PASSWORD", "TOOLHIVE_SECRETS_PASSWORD", "APIARY_SECRETS_PROVIDER", "TOOLHIVE_SECRETS_PROVIDER"]
    {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    finish(child, COMMAND_LIMIT, &format!("apiary {}", args.join(" ")))
}

fn secrets_dir(apiary: &Apiary) -> std::path::PathBuf {
    apiary.state_dir().join("secrets")
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for entry in entries.flatten() {
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

#[test]
fn encrypted_store_setup_set_list_get_delete() {
    let apiary = Apiary::new();
    let value = "s3cr3t-value-7f1c9a";
    // Nothing works before setup, and says so.
    let out = run_with(&apiary, &["secret", "list"], "", &[]);
    assert!(out.failed().contains("apiary secret setup"), "{}", out.stderr);

    run_with(&apiary, &["secret", "setup"], "", &[]).ok();
    let store = secrets_dir(&apiary).join("secrets.enc");
    let key = secrets_dir(&apiary).join("secrets.key");
    use std::os::unix::fs::PermissionsExt;
    for p in [&store, &key] {
        assert_eq!(std::fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600, "{}", p.display());
    }
    assert_eq!(run_with(&apiary, &["secret", "list"], "", &[]).ok().stdout, "No secrets found\n");

    // The value comes from stdin (one trailing newline dropped), never from argv.
    run_with(&apiary, &["secret", "set", "github-token"], &format!("{value}\n"), &[]).ok();
    run_with(&apiary, &["secret", "set", "other"], "two words\r\n", &[]).ok();
    let out = run_with(&apiary, &["secret", "set", "empty"], "", &[]);
    assert!(out.failed().contains("no value on standard input"), "{}", out.stderr);
    let out = run_with(&apiary, &["secret", "set", "bad name"], "x", &[]);
    assert!(out.failed().contains("is not a secret name"), "{}", out.stderr);

    let out = run_with(&apiary, &["secret", "list"], "", &[]);
    assert_eq!(out.ok().stdout, "github-token\nother\n");
    assert!(!out.stderr.contains(value));
    let out = run_with(&apiary, &["secret", "list", "--format", "json"], "", &[]);
    assert_eq!(serde_json::from_str::<Vec<String>>(&out.ok().stdout).unwrap(), ["github-token", "other"]);
    assert_eq!(run_with(&apiary, &["secret", "get", "github-token"], "", &[]).ok().stdout, format!("{value}\n"));
    assert_eq!(run_with(&apiary, &["secret", "get", "other"], "", &[]).ok().stdout, "two words\n");
    let out = run_with(&apiary, &["secret", "get", "nope"], "", &[]);
    assert!(out.failed().contains("no secret named \"nope\""), "{}", out.stderr);
    // The value is nowhere in plain text on disk.
    assert!(files_containing(&apiary.state_dir(), value).is_empty());

    run_with(&apiary, &["secret", "delete", "other"], "", &[]).ok();
    let out = run_with(&apiary, &["secret", "delete", "other"], "", &[]);
    assert!(out.failed().contains("no secret named \"other\""), "{}", out.stderr);
    assert_eq!(run_with(&apiary, &["secret", "list"], "", &[]).ok().stdout, "github-token\n");

    // Setup again keeps what is stored.
    run_with(&apiary, &["secret", "setup"], "", &[]).ok();
    assert_eq!(run_with(&apiary, &["secret", "list"], "", &[]).ok().stdout, "github-token\n");
}

#[test]
fn wrong_key_and_corrupted_store_fail_clearly_and_reset_starts_over() {
    let apiary = Apiary::new();
    run_with(&apiary, &["secret", "setup", "--provider", "encrypted"], "", &[]).ok();
    run_with(&apiary, &["secret", "set", "a"], "value-a", &[]).ok();
    let store = secrets_dir(&apiary).join("secrets.enc");
    let key = secrets_dir(&apiary).join("secrets.key");
    let good_key = std::fs::read(&key).unwrap();
    let good_store = std::fs::read(&store).unwrap();

    std::fs::write(&key, format!("{}\n", "0f".repeat(32))).unwrap();
    let out = run_with(&apiary, &["secret", "list"], "", &[]);
    let err = out.failed();
    assert!(err.contains("cannot decrypt the secret store"), "{err}");
    assert!(err.contains("key file does not match"), "{err}");
    // A failed open never turns into an empty store: the old content is still there.
    assert_eq!(std::fs::read(&store).unwrap(), good_store);
    std::fs::write(&key, &good_key).unwrap();

    let mut flipped = good_store.clone();
    flipped[good_store.len() / 2 + 20] ^= 0x01;
    std::fs::write(&store, &flipped).unwrap();
    let out = run_with(&apiary, &["secret", "get", "a"], "", &[]);
    assert!(out.failed().contains("cannot decrypt"), "{}", out.stderr);
    std::fs::write(&store, b"{\"not\": \"ours\"}").unwrap();
    let out = run_with(&apiary, &["secret", "set", "b"], "x", &[]);
    assert!(out.failed().contains("is corrupted: not an Apiary secret store"), "{}", out.stderr);
    assert_eq!(std::fs::read(&store).unwrap(), b"{\"not\": \"ours\"}", "a failed set must not rewrite the file");

    std::fs::write(&store, &good_store).unwrap();
    std::fs::remove_file(&key).unwrap();
    let out = run_with(&apiary, &["secret", "list"], "", &[]);
    assert!(out.failed().contains("key file"), "{}", out.stderr);

    let out = run_with(&apiary, &["secret", "reset-keyring"], "", &[]);
    assert!(out.ok().stderr.contains("Removed"), "{}", out.stderr);
    assert!(!store.exists());
    run_with(&apiary, &["secret", "setup"], "", &[]).ok();
    assert_eq!(run_with(&apiary, &["secret", "list"], "", &[]).ok().stdout, "No secrets found\n");
}

#[test]
fn passphrase_store_and_environment_provider() {
    let apiary = Apiary::new();
    let pw = [("TOOLHIVE_SECRETS_PASSWORD", "a long passphrase")];
    let out = run_with(&apiary, &["secret", "setup"], "", &pw);
    assert!(out.ok().stderr.contains("passphrase"), "{}", out.stderr);
    assert!(!secrets_dir(&apiary).join("secrets.key").exists());
    run_with(&apiary, &["secret", "set", "k"], "v1", &pw).ok();
    assert_eq!(run_with(&apiary, &["secret", "get", "k"], "", &pw).ok().stdout, "v1\n");
    let out = run_with(&apiary, &["secret", "get", "k"], "", &[]);
    assert!(out.failed().contains("APIARY_SECRETS_PASSWORD"), "{}", out.stderr);
    let out = run_with(&apiary, &["secret", "get", "k"], "", &[("APIARY_SECRETS_PASSWORD", "not it")]);
    assert!(out.failed().contains("wrong APIARY_SECRETS_PASSWORD"), "{}", out.stderr);

    run_with(&apiary, &["secret", "provider", "environment"], "", &[]).ok();
    let env = [("APIARY_SECRET_tok", "from-apiary"), ("TOOLHIVE_SECRET_th", "from-toolhive")];
    assert_eq!(run_with(&apiary, &["secret", "list"], "", &env).ok().stdout, "th\ntok\n");
    assert_eq!(run_with(&apiary, &["secret", "get", "th"], "", &env).ok().stdout, "from-toolhive\n");
    let out = run_with(&apiary, &["secret", "set", "x"], "v", &env);
    assert!(out.failed().contains("read-only"), "{}", out.stderr);
    // The override variable picks the encrypted store again for one command.
    let both = [pw[0], ("APIARY_SECRETS_PROVIDER", "encrypted")];
    assert_eq!(run_with(&apiary, &["secret", "list"], "", &both).ok().stdout, "k\n");
}
