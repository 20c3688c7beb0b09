//! The read-only `environment` provider: secret `NAME` is the variable `APIARY_SECRET_NAME`, or
//! ToolHive's `TOOLHIVE_SECRET_NAME` (Apiary's wins when both are set).

/// Prefixes of the variables that hold secrets, in order of precedence.
pub const ENV_PREFIXES: [&str; 2] = ["APIARY_SECRET_", "TOOLHIVE_SECRET_"];

/// A snapshot of the variables the provider reads.
#[derive(Clone, Default)]
pub struct EnvironmentProvider {
    vars: Vec<(String, String)>,
}

impl std::fmt::Debug for EnvironmentProvider {
    // Values are secrets: never in Debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvironmentProvider").field("names", &self.list()).finish()
    }
}

impl EnvironmentProvider {
    /// Reads this process's environment (variables that are not UTF-8 are skipped).
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))))
    }

    /// From explicit pairs (tests).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars = pairs.into_iter().filter(|(k, _)| ENV_PREFIXES.iter().any(|p| k.starts_with(p))).collect();
        EnvironmentProvider { vars }
    }

    /// The secret's value, if a variable holds it.
    pub fn get(&self, name: &str) -> Option<String> {
        ENV_PREFIXES.iter().find_map(|prefix| {
            let var = format!("{prefix}{name}");
            self.vars.iter().find(|(k, _)| *k == var).map(|(_, v)| v.clone())
        })
    }

    /// The names of every secret present, sorted, without duplicates.
    pub fn list(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .vars
            .iter()
            .filter_map(|(k, _)| ENV_PREFIXES.iter().find_map(|p| k.strip_prefix(p)))
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_prefixes_apiary_first() {
        let p = EnvironmentProvider::from_pairs(
            [("TOOLHIVE_SECRET_A", "th"), ("APIARY_SECRET_A", "ap"), ("TOOLHIVE_SECRET_B", "b"), ("HOME", "/h")]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        assert_eq!(p.get("A").as_deref(), Some("ap"));
        assert_eq!(p.get("B").as_deref(), Some("b"));
        assert_eq!(p.get("HOME"), None);
        assert_eq!(p.list(), ["A", "B"]);
        assert!(!format!("{p:?}").contains("ap\""), "Debug must not show values");
    }
}
