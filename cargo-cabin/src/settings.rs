//! `[package.metadata.cabin]`: how `cargo cabin` builds and runs a package.
//!
//! ```toml
//! [package.metadata.cabin]
//! backend = "auto"                 # auto | process | kvm (passed to `cabinc run --backend`)
//! policy = "cabin-policy.toml"     # a `cabinc run --policy` file (docs/policy.md), relative to the package
//! allow-read = ["data"]            # extra --allow-read trees, relative to the package directory
//! allow-write = ["out"]            # extra --allow-write trees
//! env = ["RUST_LOG=info"]          # extra --env entries
//! allow-readable-code = false      # `cabinc build --allow-readable-code`
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// Why settings could not be read.
#[derive(Debug, Error)]
pub enum SettingsError {
    /// `[package.metadata.cabin]` has a wrong shape or unknown key.
    #[error("[package.metadata.cabin] of {package}: {message}")]
    Metadata {
        /// The package.
        package: String,
        /// What is wrong.
        message: String,
    },
    /// The policy file named in the settings does not exist.
    #[error("policy file {0} does not exist; help: fix `policy` in [package.metadata.cabin] (docs/policy.md describes the file)")]
    MissingPolicy(String),
}

/// The settings of one package.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Backend for `cabinc run`.
    #[serde(default)]
    pub backend: Option<String>,
    /// A `cabinc run --policy` file, relative to the package directory.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// Extra `--allow-read` trees, relative to the package directory.
    #[serde(default)]
    pub allow_read: Vec<PathBuf>,
    /// Extra `--allow-write` trees, relative to the package directory.
    #[serde(default)]
    pub allow_write: Vec<PathBuf>,
    /// Extra `--env K=V` entries.
    #[serde(default)]
    pub env: Vec<String>,
    /// Keep code readable.
    #[serde(default)]
    pub allow_readable_code: bool,
}

impl Settings {
    /// Reads the settings from a package's `metadata` value (from `cargo metadata`).
    pub fn from_metadata(package: &str, metadata: &serde_json::Value) -> Result<Settings, SettingsError> {
        match metadata.get("cabin") {
            None | Some(serde_json::Value::Null) => Ok(Settings::default()),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| SettingsError::Metadata { package: package.into(), message: e.to_string() }),
        }
    }

    /// The `cabinc run` arguments (before the image), with relative paths resolved against the
    /// package directory.
    pub fn run_args(&self, package_dir: &Path) -> Result<Vec<String>, SettingsError> {
        let mut a = vec!["--backend".to_string(), self.backend.clone().unwrap_or_else(|| "auto".into())];
        if let Some(p) = &self.policy {
            let path = package_dir.join(p);
            if !path.is_file() {
                return Err(SettingsError::MissingPolicy(path.display().to_string()));
            }
            a.push("--policy".into());
            a.push(path.display().to_string());
        }
        for d in &self.allow_read {
            a.push("--allow-read".into());
            a.push(package_dir.join(d).display().to_string());
        }
        for d in &self.allow_write {
            a.push("--allow-write".into());
            a.push(package_dir.join(d).display().to_string());
        }
        for e in &self.env {
            a.push("--env".into());
            a.push(e.clone());
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_metadata_into_run_arguments() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("pol.toml"), "version = 1\n").expect("w");
        let md = json!({"cabin": {"backend": "process", "policy": "pol.toml", "allow-write": ["out"], "env": ["A=1"]}});
        let s = Settings::from_metadata("p", &md).expect("settings");
        assert_eq!(s.backend.as_deref(), Some("process"));
        let args = s.run_args(dir.path()).expect("args");
        let pol = dir.path().join("pol.toml").display().to_string();
        let out = dir.path().join("out").display().to_string();
        assert_eq!(
            args,
            vec!["--backend", "process", "--policy", &pol, "--allow-write", &out, "--env", "A=1"]
        );
    }

    #[test]
    fn defaults_and_unknown_keys() {
        assert_eq!(Settings::from_metadata("p", &json!(null)).expect("none"), Settings::default());
        assert_eq!(Settings::from_metadata("p", &json!({"other": 1})).expect("none"), Settings::default());
        let e = Settings::from_metadata("p", &json!({"cabin": {"backnd": "kvm"}})).expect_err("typo");
        assert!(e.to_string().contains("backnd"), "{e}");
        let s = Settings { policy: Some("missing.toml".into()), ..Settings::default() };
        let e = s.run_args(Path::new("/nonexistent")).expect_err("missing policy");
        assert!(e.to_string().contains("help:"), "{e}");
        assert_eq!(Settings::default().run_args(Path::new("/")).expect("args"), vec!["--backend", "auto"]);
    }
}
