//! The MCP revisions Apiary speaks, and the era each belongs to.
//!
//! Legacy revisions open with an `initialize` handshake and keep per-connection state;
//! the modern revision (2026-07-28) stamps its version into every request's `_meta`.

use std::fmt;
use std::str::FromStr;

/// One published MCP revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Revision {
    V2024_11_05,
    V2025_03_26,
    V2025_06_18,
    V2025_11_25,
    V2026_07_28,
}

/// The two protocol eras that share one URL space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Era {
    /// 2024-11-05 … 2025-11-25: handshake and sessions.
    Legacy,
    /// 2026-07-28: stateless, version in every request.
    Modern,
}

impl Revision {
    /// Every revision, oldest first.
    pub const ALL: [Revision; 5] = [
        Revision::V2024_11_05,
        Revision::V2025_03_26,
        Revision::V2025_06_18,
        Revision::V2025_11_25,
        Revision::V2026_07_28,
    ];

    /// The legacy revisions, oldest first.
    pub const LEGACY: [Revision; 4] =
        [Revision::V2024_11_05, Revision::V2025_03_26, Revision::V2025_06_18, Revision::V2025_11_25];

    /// The newest legacy revision: what Apiary offers in an `initialize` it sends.
    pub const LATEST_LEGACY: Revision = Revision::V2025_11_25;

    /// The revision assumed for a legacy HTTP request that carries no version header and
    /// belongs to no session (mcp-brief.md, rule 10).
    pub const HTTP_DEFAULT: Revision = Revision::V2025_03_26;

    pub fn as_str(self) -> &'static str {
        match self {
            Revision::V2024_11_05 => "2024-11-05",
            Revision::V2025_03_26 => "2025-03-26",
            Revision::V2025_06_18 => "2025-06-18",
            Revision::V2025_11_25 => "2025-11-25",
            Revision::V2026_07_28 => "2026-07-28",
        }
    }

    pub fn era(self) -> Era {
        match self {
            Revision::V2026_07_28 => Era::Modern,
            _ => Era::Legacy,
        }
    }

    /// JSON-RPC batches exist only in 2025-03-26.
    pub fn allows_batches(self) -> bool {
        self == Revision::V2025_03_26
    }

    /// From 2025-06-18 on, HTTP clients repeat the negotiated version in a header.
    pub fn has_version_header(self) -> bool {
        self >= Revision::V2025_06_18
    }

    /// The modern revision names (what `server/discover` lists and -32022 offers).
    pub fn modern_names() -> Vec<&'static str> {
        Self::ALL.iter().filter(|r| r.era() == Era::Modern).map(|r| r.as_str()).collect()
    }

    /// The legacy revision names, for error data.
    pub fn legacy_names() -> Vec<&'static str> {
        Self::LEGACY.iter().map(|r| r.as_str()).collect()
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no revision Apiary knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown MCP revision `{0}`")]
pub struct UnknownRevision(pub String);

impl FromStr for Revision {
    type Err = UnknownRevision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Revision::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRevision(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for r in Revision::ALL {
            assert_eq!(r.as_str().parse::<Revision>(), Ok(r));
        }
        assert!("2099-01-01".parse::<Revision>().is_err());
    }

    #[test]
    fn eras_and_features() {
        assert_eq!(Revision::V2026_07_28.era(), Era::Modern);
        assert!(Revision::LEGACY.iter().all(|r| r.era() == Era::Legacy));
        assert!(Revision::V2025_03_26.allows_batches());
        assert!(!Revision::V2025_06_18.allows_batches());
        assert!(!Revision::V2025_03_26.has_version_header());
        assert!(Revision::V2025_11_25.has_version_header());
        assert!(Revision::V2024_11_05 < Revision::V2025_11_25);
    }
}
