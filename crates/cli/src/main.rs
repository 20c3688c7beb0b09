//! The `apiary` binary: parses flags, wires a runtime into a proxy, prints for people.

mod mcp_cmd;

fn main() {}
