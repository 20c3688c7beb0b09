//! Runs the official MCP conformance suite's server scenarios against a URL and reads its
//! summary, so every crate proves conformance the same way.

use std::process::Stdio;
use std::time::Duration;

/// Scenarios `conformance server --requirements 2025-11-25` runs (30 scored + 3 not scored).
pub const EXPECTED_2025_11_25: usize = 33;
/// Bound on one whole suite run (it takes about a minute).
pub const SUITE_TIMEOUT: Duration = Duration::from_secs(900);

/// What the suite's `=== SUMMARY ===` block says, plus the raw output for reports.
#[derive(Debug, Default)]
pub struct Summary {
    pub passed: Vec<String>,
    pub failed: Vec<String>,
    pub total_checks_passed: u64,
    pub total_checks_failed: u64,
    pub success: bool,
    pub output: String,
}

impl Summary {
    /// Prints the scenarios that passed and failed, then panics (with the suite's output)
    /// unless at least `floor` passed: the floor tests of every setup.
    pub fn assert_floor(&self, floor: usize) {
        println!("passed {}: {:?}\nfailed {}: {:?}", self.passed.len(), self.passed, self.failed.len(), self.failed);
        assert!(
            self.passed.len() >= floor,
            "passed {} < {floor}; failing: {:?}\n{}",
            self.passed.len(),
            self.failed,
            self.output
        );
    }

    /// [`Summary::assert_floor`], and also no scenario and no check failed.
    pub fn assert_all_pass(&self, expected: usize) {
        self.assert_floor(expected);
        assert!(self.failed.is_empty(), "failing: {:?}\n{}", self.failed, self.output);
        assert_eq!(self.total_checks_failed, 0, "{}", self.output);
    }
}

/// Parses the summary block: one `✓ name: N passed, M failed` (or `✗ ...`) line per
/// scenario, then `Total: N passed, M failed`.
pub fn parse_summary(output: &str) -> Option<Summary> {
    let block = output.split("=== SUMMARY ===").nth(1)?;
    let mut summary = Summary::default();
    for line in block.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("✓ ") {
            summary.passed.push(rest.split(':').next()?.to_owned());
        } else if let Some(rest) = line.strip_prefix("✗ ") {
            summary.failed.push(rest.to_owned());
        } else if let Some(rest) = line.strip_prefix("Total: ") {
            let mut numbers = rest.split(|c: char| !c.is_ascii_digit()).filter(|part| !part.is_empty());
            summary.total_checks_passed = numbers.next()?.parse().ok()?;
            summary.total_checks_failed = numbers.next()?.parse().ok()?;
            return Some(summary);
        }
    }
    None
}

/// Where the suite saves each scenario's checks when this variable names a directory (to
/// read why a scenario failed; the summary only names it).
pub const OUTPUT_DIR_VAR: &str = "APIARY_CONFORMANCE_OUTPUT_DIR";

/// Runs `conformance server --url URL --requirements REV` (working files in a temp dir;
/// the per-scenario checks in [`OUTPUT_DIR_VAR`] when set).
///
/// # Panics
/// When the suite cannot run, does not finish within [`SUITE_TIMEOUT`], or prints no summary.
pub async fn run_server_suite(url: &str, requirements: &str) -> Summary {
    let workdir = std::env::temp_dir().join(format!("apiary-conformance-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&workdir);
    let mut suite = tokio::process::Command::from(crate::env::command("conformance"));
    suite
        .args(["server", "--url", url, "--requirements", requirements])
        .current_dir(&workdir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(dir) = std::env::var_os(OUTPUT_DIR_VAR).filter(|d| !d.is_empty()) {
        suite.arg("--output-dir").arg(dir);
    }
    let output = tokio::time::timeout(SUITE_TIMEOUT, suite.output())
        .await
        .expect("the conformance suite did not finish in time")
        .expect("cannot run the conformance suite");
    let _ = std::fs::remove_dir_all(&workdir);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let text = format!("{stdout}\nstderr:\n{}", String::from_utf8_lossy(&output.stderr));
    let mut summary = parse_summary(&stdout).unwrap_or_else(|| panic!("no summary in the suite output:\n{text}"));
    summary.success = output.status.success();
    summary.output = text;
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_parser_reads_passes_failures_and_totals() {
        let text = "noise\n=== SUMMARY ===\n✓ ping: 2 passed, 0 failed\n✗ tools-list: 1 passed, 2 failed\n\nTotal: 3 passed, 2 failed\n";
        let summary = parse_summary(text).unwrap();
        assert_eq!(summary.passed, vec!["ping"]);
        assert_eq!(summary.failed.len(), 1);
        assert_eq!((summary.total_checks_passed, summary.total_checks_failed), (3, 2));
        assert!(parse_summary("no summary here").is_none());
    }
}
