//! Turns a package or command source into the program and arguments to execute.

use crate::run_config::RunConfig;
use crate::source::{Ecosystem, Source};

/// A program and its full argument list, ready for `execve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// Program name (looked up in `PATH`) or path.
    pub program: String,
    /// Arguments, not including the program itself.
    pub args: Vec<String>,
}

impl RunConfig {
    /// The command that starts the server on this machine, for package and command sources; `None`
    /// for image sources (the container runtime passes `args` to the image) and remote sources.
    ///
    /// - npx: `npx -y <name> <args...>` (`-y` so npx never stops to ask on a closed stdin).
    /// - uvx: `uvx <name> <args...>` for a bare name or `name@version` (uvx's own exact-version
    ///   syntax); `uvx --from <spec> <name> <args...>` for anything else (`name==1.2`, `name[extra]>=1`),
    ///   which every uv release accepts.
    /// - command: `<program> <command.args...> <args...>`.
    pub fn command_line(&self) -> Option<CommandLine> {
        let (program, mut args) = match &self.source {
            Source::Package(p) => match p.ecosystem {
                Ecosystem::Npx => ("npx".to_owned(), vec!["-y".to_owned(), p.name.clone()]),
                Ecosystem::Uvx => ("uvx".to_owned(), uvx_args(&p.name)),
            },
            Source::Command(c) => (c.program.clone(), c.args.clone()),
            Source::Image(_) | Source::Remote(_) => return None,
        };
        args.extend(self.args.iter().cloned());
        Some(CommandLine { program, args })
    }
}

/// Splits a PyPI requirement into its leading distribution name and the rest (`@1.2`, `==1.2`,
/// `[extra]>=1`, ...). The name is the longest prefix of `[A-Za-z0-9._-]`.
pub(crate) fn split_python_requirement(spec: &str) -> (&str, &str) {
    let end = spec.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))).unwrap_or(spec.len());
    spec.split_at(end)
}

fn uvx_args(spec: &str) -> Vec<String> {
    let (name, rest) = split_python_requirement(spec);
    if rest.is_empty() || rest.starts_with('@') {
        vec![spec.to_owned()]
    } else {
        vec!["--from".to_owned(), spec.to_owned(), name.to_owned()]
    }
}
