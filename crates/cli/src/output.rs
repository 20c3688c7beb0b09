//! Printing for people and for scripts: aligned text tables, `--format json`, the version line.

use std::fmt::Write as _;

/// `--format` of commands that print data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people
    Text,
    /// JSON for scripts
    Json,
}

/// Columns padded to the widest cell, two spaces apart, no trailing spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let width = widths.get(i).copied().unwrap_or(0);
            let _ = write!(text, "{cell:<width$}");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// Writes `text` to stdout. A reader that went away (`apiary ls | head -1`) is not an error, and
/// unlike `print!` this never panics.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// [`emit`] with a newline.
pub fn emit_line(text: &str) {
    emit(&format!("{text}\n"));
}

/// Prints `value` as pretty JSON with a trailing newline.
pub fn print_json(value: &serde_json::Value) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => emit_line(&text),
        // A Value always serialises; keep the output a JSON document regardless.
        Err(_) => emit_line("null"),
    }
}

/// `apiary version`.
pub fn print_version(format: Format) {
    let version = env!("CARGO_PKG_VERSION");
    match format {
        Format::Text => emit_line(&format!("apiary {version}")),
        Format::Json => print_json(&serde_json::json!({ "version": version })),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligns_columns_without_trailing_spaces() {
        let t = super::table(
            &["NAME", "STATUS", "URL"],
            &[
                vec!["a".into(), "running".into(), "http://x".into()],
                vec!["longer".into(), "stopped".into(), String::new()],
            ],
        );
        assert_eq!(t, "NAME    STATUS   URL\na       running  http://x\nlonger  stopped\n");
    }
}
