//! Writing a RunConfig as JSON or YAML text, and to a file atomically (temporary file, then rename).

use std::io::Write;
use std::path::Path;

use crate::error::{ConfigError, Format};
use crate::run_config::RunConfig;

impl RunConfig {
    /// Pretty JSON with a trailing newline.
    pub fn to_json_pretty(&self) -> Result<String, ConfigError> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| ConfigError::Serialize { format: Format::Json, message: e.to_string() })?;
        text.push('\n');
        Ok(text)
    }

    /// YAML text.
    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        serde_saphyr::to_string(self)
            .map_err(|e| ConfigError::Serialize { format: Format::Yaml, message: e.to_string() })
    }

    /// Text in the given format.
    pub fn to_string_as(&self, format: Format) -> Result<String, ConfigError> {
        match format {
            Format::Json => self.to_json_pretty(),
            Format::Yaml => self.to_yaml(),
        }
    }

    /// Writes the file so that readers see the old or the new content, never a part: the text goes to
    /// a temporary file in the same directory (mode 0600, since `env` may hold secrets), is flushed to
    /// disk and renamed over `path`. YAML for `.yaml`/`.yml`, JSON otherwise.
    pub fn write_atomic(&self, path: impl AsRef<Path>) -> Result<(), ConfigError> {
        let path = path.as_ref();
        let format = Format::for_path(path).unwrap_or(Format::Json);
        let text = self.to_string_as(format)?;
        let io_err = |source| ConfigError::Io { path: path.to_path_buf(), source };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut tmp = tempfile::Builder::new().prefix(".runconfig-").suffix(".tmp").tempfile_in(dir).map_err(io_err)?;
        tmp.write_all(text.as_bytes()).map_err(io_err)?;
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(path).map_err(|e| io_err(e.error))?;
        // Make the rename itself durable; a failure here leaves a correct file, so it is not fatal.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}
