//! Command-line flags of `apiary-bench` (clap derive) and their bounds, so every run is finite
//! and every buffer it sizes from a flag stays small.

use std::path::PathBuf;

use clap::Parser;

/// Largest accepted `--payload-bytes` (the echo text is held in memory once per session).
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Most `--sessions`: each has its own connection, so the load tool raises its open-file limit
/// (and the target needs as many sockets, plus its own upstream ones).
pub const MAX_SESSIONS: u32 = 16_384;
/// Largest `--bearer-file` read (a JWT is a few KiB).
pub const MAX_BEARER_BYTES: u64 = 64 * 1024;

/// Closed-loop MCP load generator: N sessions call the `echo` tool back to back over keep-alive
/// HTTP/1.1 and report calls/s, latency percentiles and (with --pid) the target's CPU per call.
#[derive(Debug, Parser)]
#[command(name = "apiary-bench", version, about)]
#[command(after_help = "Example:\n  \
    apiary-bench --url http://127.0.0.1:8080/mcp --sessions 8 --duration 10 --pid 1234 --json out.json")]
pub struct Args {
    /// URL of the MCP endpoint (Streamable HTTP, e.g. http://127.0.0.1:8080/mcp)
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Concurrent sessions, each on its own keep-alive connection with a call always in flight
    /// (1..=16384; at most 64 handshake at once)
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_SESSIONS)))]
    pub sessions: u32,
    /// The tool called with `{"text": <payload>}`, whose answer must echo the text (a gateway
    /// shows the fixture's `echo` behind its prefix, e.g. `fixture_echo`)
    #[arg(long, default_value = "echo", value_name = "NAME", value_parser = parse_tool)]
    pub tool: String,
    /// Send `Authorization: Bearer <the file's content, trimmed>` with every request (the token
    /// stays off the command line and out of the report)
    #[arg(long, value_name = "FILE")]
    pub bearer_file: Option<PathBuf>,
    /// Size of the echoed text in bytes (e.g. 0, 1024, 65536; at most 1 MiB)
    #[arg(long, default_value_t = 16, value_parser = parse_payload)]
    pub payload_bytes: usize,
    /// Seconds of load before measuring (0..=600)
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup: u64,
    /// Seconds measured (1..=3600)
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Timeout of each request, answer body included, in milliseconds (1..=600000)
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub request_timeout_ms: u64,
    /// A process whose CPU time (with all its descendants) and RSS are measured; repeatable
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,
    /// Pin the load tool's threads to these CPUs (e.g. 0 or 0,2 or 0-1)
    #[arg(long, value_name = "CPUS", value_parser = parse_cpu_list)]
    pub pin_self: Option<CpuList>,
    /// Pin every --pid process and its descendants (all their threads) to these CPUs
    #[arg(long, value_name = "CPUS", value_parser = parse_cpu_list, requires = "pids")]
    pub pin_target: Option<CpuList>,
    /// Acknowledge every read at once (TCP_QUICKACK), so a server that writes an answer in two
    /// segments without TCP_NODELAY is not stalled by delayed ACKs (up to 40 ms a call)
    #[arg(long)]
    pub quick_ack: bool,
    /// Worker threads of the load tool (1 = a single-threaded runtime)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: u32,
    /// Close each session (HTTP DELETE) after this many calls and open a new one, so the run
    /// churns sessions (for memory checks); nothing is abandoned at the end: the step in flight
    /// finishes and the session is closed. 0 keeps every session for the whole run
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub calls_per_session: u64,
    /// Instead of load: open N idle sessions (handshake + one tools/list each, over at most 64
    /// keep-alive connections), hold them `--hold-secs`, close them, and report the --pid
    /// processes' RSS before, while held and after, and the KiB per idle session (0..=100000)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub hold: Option<u32>,
    /// Seconds the `--hold` sessions stay open and idle before the RSS is sampled (0..=3600)
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600), requires = "hold")]
    pub hold_secs: u64,
    /// Name of the row in the Markdown output (default: the URL)
    #[arg(long)]
    pub label: Option<String>,
    /// Print the Markdown table header before the row
    #[arg(long)]
    pub header: bool,
    /// Also write every number, and the command line, to this JSON file
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// A request header sent with every request, `Name: Value` (repeatable; e.g. an
    /// `Authorization: Bearer …` for a proxy with authentication on)
    #[arg(long = "request-header", value_name = "NAME: VALUE", value_parser = parse_request_header)]
    pub request_headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// A tool name that goes into the request body unescaped: letters, digits and `_-./`.
fn parse_tool(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 128
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'));
    if ok { Ok(text.to_owned()) } else { Err(format!("{text:?}: a tool name is 1..=128 of A-Z a-z 0-9 _ - . /")) }
}

/// Reads a `--bearer-file` into an `Authorization: Bearer …` header (marked sensitive).
pub fn bearer_header(path: &std::path::Path) -> Result<(http::HeaderName, http::HeaderValue), BearerError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|source| BearerError::Read { path: path.to_owned(), source })?;
    let mut text = String::new();
    file.take(MAX_BEARER_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|source| BearerError::Read { path: path.to_owned(), source })?;
    if text.len() as u64 > MAX_BEARER_BYTES {
        return Err(BearerError::TooLong(path.to_owned()));
    }
    let token = text.trim();
    let token = token.strip_prefix("Bearer ").unwrap_or(token);
    if token.is_empty() {
        return Err(BearerError::Empty(path.to_owned()));
    }
    let mut value = http::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| BearerError::NotAHeader(path.to_owned()))?;
    value.set_sensitive(true);
    Ok((http::header::AUTHORIZATION, value))
}

/// A `--bearer-file` that cannot be used (the token itself is never in the message).
#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    #[error("cannot read the bearer file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the bearer file {0} is longer than {MAX_BEARER_BYTES} bytes")]
    TooLong(PathBuf),
    #[error("the bearer file {0} is empty")]
    Empty(PathBuf),
    #[error("the bearer file {0} holds characters a header cannot carry")]
    NotAHeader(PathBuf),
}

fn parse_request_header(text: &str) -> Result<(http::HeaderName, http::HeaderValue), String> {
    let (name, value) = text.split_once(':').ok_or_else(|| format!("{text:?}: expected `Name: Value`"))?;
    let name =
        http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| format!("{name:?} is not a header name"))?;
    let mut value =
        http::HeaderValue::from_str(value.trim()).map_err(|_| format!("the value of {name} is not a header value"))?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// A set of CPU numbers as given on the command line, sorted and without duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// Highest CPU number accepted (the size of the kernel's default cpu_set_t).
const MAX_CPU: usize = 1023;

fn parse_payload(text: &str) -> Result<usize, String> {
    let n: usize = text.parse().map_err(|_| format!("`{text}` is not a byte count"))?;
    if n > MAX_PAYLOAD_BYTES {
        return Err(format!("{n} is more than the {MAX_PAYLOAD_BYTES} bytes allowed"));
    }
    Ok(n)
}

/// Parses `0`, `0,2`, `0-3` or `0-1,4`.
pub fn parse_cpu_list(text: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let number = |s: &str| -> Result<usize, String> {
            let n: usize = s.trim().parse().map_err(|_| format!("`{s}` is not a CPU number"))?;
            if n > MAX_CPU {
                return Err(format!("CPU {n} is above {MAX_CPU}"));
            }
            Ok(n)
        };
        match part.split_once('-') {
            Some((low, high)) => {
                let (low, high) = (number(low)?, number(high)?);
                if low > high {
                    return Err(format!("`{part}` is an empty range"));
                }
                cpus.extend(low..=high);
            }
            None => cpus.push(number(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(CpuList(cpus))
}

impl std::fmt::Display for CpuList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_singles_ranges_and_mixes() {
        assert_eq!(parse_cpu_list("1").unwrap(), CpuList(vec![1]));
        assert_eq!(parse_cpu_list("0-2").unwrap(), CpuList(vec![0, 1, 2]));
        assert_eq!(parse_cpu_list("3,0-1,1").unwrap(), CpuList(vec![0, 1, 3]));
        assert!(parse_cpu_list("2-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("5000").is_err());
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(Args::try_parse_from(["b", "--url", "http://h/mcp", "--duration", "0"]).is_err());
        assert!(Args::try_parse_from(["b", "--url", "http://h/mcp", "--warmup", "601"]).is_err());
        assert!(Args::try_parse_from(["b", "--url", "http://h/mcp", "--sessions", "0"]).is_err());
        assert!(Args::try_parse_from(["b", "--url", "http://h/mcp", "--payload-bytes", "2000000"]).is_err());
        assert!(Args::try_parse_from(["b", "--url", "http://h/mcp", "--pin-target", "0"]).is_err());
        let args = Args::try_parse_from(["b", "--url", "http://h/mcp", "--pid", "1", "--pid", "2"]).unwrap();
        assert_eq!(args.pids, vec![1, 2]);
        assert_eq!((args.sessions, args.warmup, args.duration, args.request_timeout_ms), (8, 2, 10, 10_000));
        assert_eq!((args.hold, args.hold_secs), (None, 10));
        assert_eq!((args.tool.as_str(), args.bearer_file.as_ref()), ("echo", None));
    }

    #[test]
    fn sessions_go_up_to_sixteen_thousand() {
        let parse = |n: &str| Args::try_parse_from(["b", "--url", "http://h/mcp", "--sessions", n]);
        assert_eq!(parse("8192").unwrap().sessions, 8192);
        assert_eq!(parse("16384").unwrap().sessions, MAX_SESSIONS);
        assert!(parse("16385").is_err());
    }

    #[test]
    fn the_tool_name_is_checked_so_it_needs_no_escaping() {
        let parse = |t: &str| Args::try_parse_from(["b", "--url", "http://h/mcp", "--tool", t]);
        assert_eq!(parse("fixture_echo").unwrap().tool, "fixture_echo");
        assert_eq!(parse("a.b/c-d").unwrap().tool, "a.b/c-d");
        for bad in ["", "a\"b", "a b", "é", &"x".repeat(129)] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_bearer_file_becomes_a_sensitive_authorization_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "eyJ.abc.def\n").unwrap();
        let args =
            Args::try_parse_from(["b", "--url", "http://h/mcp", "--bearer-file", path.to_str().unwrap()]).unwrap();
        let (name, value) = bearer_header(args.bearer_file.as_deref().unwrap()).unwrap();
        assert_eq!(name, http::header::AUTHORIZATION);
        assert_eq!(value, "Bearer eyJ.abc.def");
        assert!(value.is_sensitive());
        // A file already holding `Bearer …` is not doubled.
        std::fs::write(&path, "Bearer eyJ.abc.def").unwrap();
        assert_eq!(bearer_header(&path).unwrap().1, "Bearer eyJ.abc.def");
        std::fs::write(&path, " \n").unwrap();
        assert!(matches!(bearer_header(&path), Err(BearerError::Empty(_))));
        std::fs::write(&path, "a\u{1}b").unwrap();
        let err = bearer_header(&path).unwrap_err();
        assert!(matches!(err, BearerError::NotAHeader(_)) && !err.to_string().contains("a\u{1}b"), "{err}");
        std::fs::write(&path, "x".repeat(MAX_BEARER_BYTES as usize + 1)).unwrap();
        assert!(matches!(bearer_header(&path), Err(BearerError::TooLong(_))));
        assert!(matches!(bearer_header(&dir.path().join("absent")), Err(BearerError::Read { .. })));
    }

    #[test]
    fn hold_takes_zero_to_a_hundred_thousand_sessions() {
        let args =
            Args::try_parse_from(["b", "--url", "http://h/mcp", "--hold", "10000", "--hold-secs", "30"]).unwrap();
        assert_eq!((args.hold, args.hold_secs), (Some(10_000), 30));
        assert_eq!(Args::try_parse_from(["b", "--url", "http://h/mcp", "--hold", "0"]).unwrap().hold, Some(0));
        assert!(Args::try_parse_from(["b", "--url", "http://h/mcp", "--hold", "100001"]).is_err());
        assert!(Args::try_parse_from(["b", "--url", "http://h/mcp", "--hold-secs", "5"]).is_err());
        assert!(Args::try_parse_from(["b", "--url", "http://h/mcp", "--hold", "1", "--hold-secs", "3601"]).is_err());
    }
}
