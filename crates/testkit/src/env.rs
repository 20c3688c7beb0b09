//! Where the tools installed by `cargo xtask test-env` live, so tests can run the real
//! programs (Node 22, npx, the conformance suite, MCP servers, Python with `mcp`, uvx).
//!
//! The tools bin is `APIARY_TOOLS_BIN`, else `$APIARY_CACHE/bin`, else
//! `$HOME/.cache/apiary/bin`. Besides executables it holds `tools.env`, KEY=VALUE lines
//! naming things that are not commands (such as the TypeScript SDK's `node_modules`).
//! Missing tools are a set-up error, so these functions panic with the fix in the message.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Names a directory of test tools directly.
pub const TOOLS_BIN_VAR: &str = "APIARY_TOOLS_BIN";
/// The cache root; its `bin` is the tools bin.
pub const CACHE_VAR: &str = "APIARY_CACHE";
/// The KEY=VALUE file in the tools bin.
pub const TOOLS_ENV_FILE: &str = "tools.env";

const FIX: &str = "run `cargo xtask test-env` (or `cargo xtask test`) first";

/// The tools bin, checked to exist.
///
/// # Panics
/// If no candidate directory exists: the tools were never installed.
pub fn tools_bin() -> PathBuf {
    let Some(dir) = locate_tools_bin(|key| std::env::var_os(key)) else {
        panic!("cannot locate the test tools: neither {TOOLS_BIN_VAR}, {CACHE_VAR} nor HOME is set; {FIX}");
    };
    if !dir.is_dir() {
        panic!("the test tools directory {} does not exist; {FIX}", dir.display());
    }
    dir
}

/// Where the tools bin would be, given how environment variables are looked up. Empty
/// values count as unset.
pub fn locate_tools_bin(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |key: &str| var(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    set(TOOLS_BIN_VAR)
        .or_else(|| set(CACHE_VAR).map(|cache| cache.join("bin")))
        .or_else(|| set("HOME").map(|home| home.join(".cache").join("apiary").join("bin")))
}

/// The path of tool `name` (e.g. `node`, `npx`, `conformance`, `mcp-server-everything`,
/// `python3`, `uvx`, `mcp-server-time`).
///
/// # Panics
/// If the tools bin or the tool is missing.
pub fn tool(name: &str) -> PathBuf {
    let path = tools_bin().join(name);
    if !path.exists() {
        panic!("test tool `{name}` is missing from {}; {FIX}", path.parent().unwrap_or(&path).display());
    }
    path
}

/// PATH with the tools bin first, so children find Node 22, npx, uvx and the venv's Python
/// before the machine's own.
pub fn path_with_tools() -> OsString {
    prepend_path(&tools_bin(), std::env::var_os("PATH").as_deref())
}

/// `dir` followed by the entries of `path` (itself removed from later positions).
pub fn prepend_path(dir: &Path, path: Option<&OsStr>) -> OsString {
    let rest = path.map(|p| std::env::split_paths(p).collect::<Vec<_>>()).unwrap_or_default();
    let dirs = std::iter::once(dir.to_owned()).chain(rest.into_iter().filter(|d| d != dir));
    // A directory containing ':' cannot be on PATH at all; fall back to the tools bin alone.
    std::env::join_paths(dirs).unwrap_or_else(|_| dir.as_os_str().to_owned())
}

/// A `Command` for tool `name` with [`path_with_tools`] as its PATH. Convert with
/// `tokio::process::Command::from` for async tests.
pub fn command(name: &str) -> Command {
    let mut cmd = Command::new(tool(name));
    cmd.env("PATH", path_with_tools());
    cmd
}

/// The value of `key` in the tools bin's `tools.env`, if present.
pub fn setting(key: &str) -> Option<String> {
    let text = std::fs::read_to_string(tools_bin().join(TOOLS_ENV_FILE)).ok()?;
    parse_setting(&text, key)
}

/// Looks up `key` in KEY=VALUE text (comments start with '#').
pub fn parse_setting(text: &str, key: &str) -> Option<String> {
    text.lines().filter(|line| !line.trim_start().starts_with('#')).find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

/// A `tools.env` value that must exist.
///
/// # Panics
/// If `tools.env` or the key is missing.
pub fn required_setting(key: &str) -> String {
    setting(key)
        .unwrap_or_else(|| panic!("{key} is missing from {}; {FIX}", tools_bin().join(TOOLS_ENV_FILE).display()))
}

/// The `node_modules` directory holding npm `@modelcontextprotocol/sdk` (and its
/// dependencies). A CommonJS test script finds the SDK with `NODE_PATH` set to it
/// (`require('@modelcontextprotocol/sdk/client/index.js')`); an ES module script needs it
/// symlinked as `node_modules` beside the script, since `import` ignores `NODE_PATH`.
///
/// # Panics
/// If the SDK is not installed.
pub fn ts_sdk_node_modules() -> PathBuf {
    let dir = PathBuf::from(required_setting("TS_SDK_NODE_MODULES"));
    if !dir.join("@modelcontextprotocol").join("sdk").is_dir() {
        panic!("the TypeScript SDK is missing from {}; {FIX}", dir.display());
    }
    dir
}

/// The Docker-API socket of the test Podman, `unix:///…/podman.sock`, which `cargo xtask test`
/// (or `cargo xtask podman up`) starts and exports together with `CONTAINERS_CONF` and
/// `CONTAINERS_STORAGE_CONF` (so a test's `podman` commands use the same private store).
pub const PODMAN_SOCKET_VAR: &str = "APIARY_PODMAN_SOCKET";

/// The test Podman's socket ([`PODMAN_SOCKET_VAR`]).
///
/// # Panics
/// If it is not set: the container tests need the real engine and never skip.
pub fn podman_socket() -> String {
    match std::env::var(PODMAN_SOCKET_VAR) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{PODMAN_SOCKET_VAR} is not set: run the tests with `cargo xtask test`, or `eval \"$(cargo xtask podman up)\"` first"
        ),
    }
}

/// Tool `name` (`kubectl`, `helm`, …) of the test cluster's build cache
/// (`$APIARY_CACHE/k8s/<version>/<name>`, the newest version), as `cargo xtask cluster build`
/// leaves it.
///
/// # Panics
/// If no cached version holds it.
pub fn cluster_tool(name: &str) -> PathBuf {
    let cache = match std::env::var_os(CACHE_VAR).filter(|c| !c.is_empty()) {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache").join("apiary"),
    };
    let dir = cache.join("k8s");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join(name))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| panic!("no {name} in {}: run `cargo xtask cluster build`", dir.display()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::{Child, Stdio};
    use std::time::{Duration, Instant};

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn tools_bin_variable_wins() {
        let found = locate_tools_bin(vars(&[("APIARY_TOOLS_BIN", "/t/bin"), ("APIARY_CACHE", "/c"), ("HOME", "/h")]));
        assert_eq!(found, Some(PathBuf::from("/t/bin")));
    }

    #[test]
    fn cache_then_home_are_fallbacks() {
        let cache = locate_tools_bin(vars(&[("APIARY_TOOLS_BIN", ""), ("APIARY_CACHE", "/c")]));
        assert_eq!(cache, Some(PathBuf::from("/c/bin")));
        let home = locate_tools_bin(vars(&[("HOME", "/h")]));
        assert_eq!(home, Some(PathBuf::from("/h/.cache/apiary/bin")));
        assert_eq!(locate_tools_bin(vars(&[])), None);
    }

    #[test]
    fn prepend_puts_tools_first_once() {
        let path = prepend_path(Path::new("/t"), Some(OsStr::new("/usr/bin:/t:/bin")));
        assert_eq!(path, OsString::from("/t:/usr/bin:/bin"));
        assert_eq!(prepend_path(Path::new("/t"), None), OsString::from("/t"));
    }

    #[test]
    fn settings_parse_and_skip_comments() {
        let text = "# KEY=no\nA=1\nTS_SDK_NODE_MODULES=/x/node_modules\n";
        assert_eq!(parse_setting(text, "TS_SDK_NODE_MODULES").as_deref(), Some("/x/node_modules"));
        assert_eq!(parse_setting(text, "KEY"), None);
    }

    /// Runs `cmd` to completion within `limit`, returning stdout; kills it otherwise.
    fn stdout_within(mut cmd: Command, limit: Duration) -> String {
        let mut child: Child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let mut out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            out.read_to_string(&mut text).unwrap();
            text
        });
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "{cmd:?} failed: {status}");
                return reader.join().unwrap();
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("{cmd:?} did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // These use the installed tools, as every test that needs a real program does.

    #[test]
    fn npx_children_run_node_22() {
        // npm exec -c runs its command the way npx runs a package's `#!/usr/bin/env node`
        // bin: through PATH. The machine's own node is older, so this proves the wrapper
        // puts Node 22 first.
        let mut cmd = command("npx");
        cmd.args(["-c", "node --version"]);
        let version = stdout_within(cmd, Duration::from_secs(60));
        assert!(version.starts_with("v22."), "{version}");
    }

    #[test]
    fn python_has_the_mcp_package() {
        let mut cmd = command("python3");
        cmd.args(["-c", "import mcp.client.stdio; print('ok')"]);
        assert_eq!(stdout_within(cmd, Duration::from_secs(60)).trim(), "ok");
    }

    #[test]
    fn typescript_sdk_is_requirable() {
        let mut cmd = command("node");
        cmd.env("NODE_PATH", ts_sdk_node_modules()).args([
            "-e",
            "const { Client } = require('@modelcontextprotocol/sdk/client/index.js');\
             console.log(typeof Client)",
        ]);
        assert_eq!(stdout_within(cmd, Duration::from_secs(60)).trim(), "function");
    }
}
