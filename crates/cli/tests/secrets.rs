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

#[test]
fn run_secret_reaches_the_server_and_nothing_else() {
    let apiary = Apiary::new();
    let value = "tok-5e1d2c-only-in-the-child";
    let password = "unlock-9b7a-passphrase";
    let env = [("APIARY_SECRETS_PASSWORD", password), ("APIARY_SECRET_unrelated", "env-provider-value")];
    run_with(&apiary, &["secret", "setup"], "", &env).ok();
    run_with(&apiary, &["secret", "set", "api-token"], value, &env).ok();

    let server = apiary_testkit::binaries::testkit_server().to_string_lossy().into_owned();
    let run = ["run", "--name", "t", "--secret", "api-token,target=MY_TOKEN", "--", &server, "--stdio"];
    let out = run_with(&apiary, &run, "", &env);
    out.ok();
    let call = |var: &str| {
        let args = format!(r#"{{"name":"{var}"}}"#);
        run_with(&apiary, &["mcp", "call", "env", "--server", "t", "--args", &args], "", &[])
    };
    let out = call("MY_TOKEN");
    assert!(out.ok().stdout.contains(value), "{}", out.stdout);
    // What unlocks the store, and the environment provider's variables, stay out of the child.
    for var in ["APIARY_SECRETS_PASSWORD", "APIARY_SECRET_unrelated"] {
        let out = call(var);
        assert!(!out.stdout.contains(password) && !out.stdout.contains("env-provider-value"), "{var}: {}", out.stdout);
        assert!(format!("{}{}", out.stdout, out.stderr).contains("no variable"), "{var}: {}{}", out.stdout, out.stderr);
    }

    // The RunConfig keeps the reference only; no output and no file under the state directory
    // holds the value (the RunConfig, the record, both logs, the store).
    let outputs = [
        run_with(&apiary, &["export", "t"], "", &[]),
        run_with(&apiary, &["status", "t", "--format", "json"], "", &[]),
        run_with(&apiary, &["list", "--format", "json"], "", &[]),
        run_with(&apiary, &["logs", "t"], "", &[]),
        run_with(&apiary, &["logs", "t", "--proxy"], "", &[]),
        run_with(&apiary, &["secret", "list"], "", &env),
    ];
    let exported = &outputs[0].ok().stdout;
    assert!(exported.contains("\"target\": \"MY_TOKEN\""), "{exported}");
    for out in &outputs {
        out.ok();
        assert!(!out.stdout.contains(value) && !out.stderr.contains(value), "{out:?}");
    }
    for needle in [value, password] {
        assert_eq!(files_containing(&apiary.state_dir(), needle), Vec::<String>::new(), "{needle} on disk");
    }

    // `restart` reads the value again from the store.
    run_with(&apiary, &["secret", "set", "api-token"], "second-value-3c4d", &env).ok();
    run_with(&apiary, &["restart", "t"], "", &env).ok();
    assert!(call("MY_TOKEN").ok().stdout.contains("second-value-3c4d"));

    // A missing secret fails the start, naming it.
    run_with(&apiary, &["stop", "t"], "", &[]).ok();
    run_with(&apiary, &["secret", "delete", "api-token"], "", &env).ok();
    let out = run_with(&apiary, &["start", "t"], "", &env);
    let err = out.failed();
    assert!(err.contains("secret not found in the encrypted secrets provider: api-token"), "{err}");
    // Without the passphrase the start fails saying what is missing.
    run_with(&apiary, &["secret", "set", "api-token"], "v", &env).ok();
    let out = run_with(&apiary, &["start", "t"], "", &[]);
    assert!(out.failed().contains("APIARY_SECRETS_PASSWORD"), "{}", out.stderr);
    assert!(apiary.wait_no_processes().is_empty());
}

#[test]
fn run_secret_flag_is_checked_before_anything_is_saved() {
    let apiary = Apiary::new();
    let out = run_with(&apiary, &["run", "--name", "t", "--secret", "tok", "--", "sh"], "", &[]);
    assert!(out.failed().contains("--secret expects NAME,target=ENV"), "{}", out.stderr);
    let out = run_with(&apiary, &["run", "--name", "t", "--secret", "tok,target=1X", "--", "sh"], "", &[]);
    assert!(out.failed().contains("secrets[0].target (--secret)"), "{}", out.stderr);
    let out = run_with(&apiary, &["run", "--secret", "tok,target=X", "https://example.com/mcp"], "", &[]);
    assert!(out.failed().contains("no process to give secrets to"), "{}", out.stderr);
    assert!(apiary.state().names().unwrap_or_default().is_empty());
}
