//! `[package.metadata.cabin]`: how `cargo cabin` builds and runs a package.
//!
//! ```toml
//! [package.metadata.cabin]
//! backend = "auto"                 # auto | process | kvm (passed to `cabinc run --backend`)
//! policy = "cabin-policy.toml"     # file with allow-read / allow-write / env, relative to the package
//! allow-read = ["data"]            # also allowed inline; relative to the package directory
//! allow-write = ["out"]
//! env = ["RUST_LOG=info"]
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
    /// The policy file is missing or malformed.
    #[error("policy file {path}: {message}")]
    Policy {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The confinement policy: what a confined run may see.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Policy {
    /// Directories readable by the program.
    #[serde(default)]
    pub allow_read: Vec<PathBuf>,
    /// Directories writable by the program.
    #[serde(default)]
    pub allow_write: Vec<PathBuf>,
    /// Environment variables `K=V`.
    #[serde(default)]
    pub env: Vec<String>,
}

/// The settings of one package.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Backend for `cabinc run`.
    #[serde(default)]
    pub backend: Option<String>,
    /// Policy file.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// Inline policy entries.
    #[serde(default)]
    pub allow_read: Vec<PathBuf>,
    /// Inline policy entries.
    #[serde(default)]
    pub allow_write: Vec<PathBuf>,
    /// Inline policy entries.
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

    /// The whole policy: the policy file's entries then the inline ones, with relative paths
    /// resolved against the package directory.
    pub fn policy(&self, package_dir: &Path) -> Result<Policy, SettingsError> {
        let mut p = Policy::default();
        if let Some(file) = &self.policy {
            let path = package_dir.join(file);
            let err = |message: String| SettingsError::Policy { path: path.display().to_string(), message };
            let text = std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
            let fp: Policy = toml::from_str(&text).map_err(|e| err(e.message().to_string()))?;
            let base = path.parent().unwrap_or(package_dir);
            p.allow_read.extend(fp.allow_read.iter().map(|d| base.join(d)));
            p.allow_write.extend(fp.allow_write.iter().map(|d| base.join(d)));
            p.env.extend(fp.env);
        }
        p.allow_read.extend(self.allow_read.iter().map(|d| package_dir.join(d)));
        p.allow_write.extend(self.allow_write.iter().map(|d| package_dir.join(d)));
        p.env.extend(self.env.iter().cloned());
        Ok(p)
    }

    /// The `cabinc run` arguments for this policy (before the image).
    pub fn run_args(&self, policy: &Policy) -> Vec<String> {
        let mut a = vec!["--backend".to_string(), self.backend.clone().unwrap_or_else(|| "auto".into())];
        for d in &policy.allow_read {
            a.push("--allow-read".into());
            a.push(d.display().to_string());
        }
        for d in &policy.allow_write {
            a.push("--allow-write".into());
            a.push(d.display().to_string());
        }
        for e in &policy.env {
            a.push("--env".into());
            a.push(e.clone());
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_metadata_and_policy_file() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("pol.toml"), "allow-read = [\"data\"]\nenv = [\"A=1\"]\n").expect("w");
        let md = json!({"cabin": {"backend": "process", "policy": "pol.toml", "allow-write": ["out"]}});
        let s = Settings::from_metadata("p", &md).expect("settings");
        assert_eq!(s.backend.as_deref(), Some("process"));
        let p = s.policy(dir.path()).expect("policy");
        assert_eq!(p.allow_read, vec![dir.path().join("data")]);
        assert_eq!(p.allow_write, vec![dir.path().join("out")]);
        let args = s.run_args(&p);
        assert_eq!(args[..2], ["--backend".to_string(), "process".to_string()]);
        assert!(args.contains(&"--env".to_string()) && args.contains(&"A=1".to_string()));
    }

    #[test]
    fn defaults_and_unknown_keys() {
        assert_eq!(Settings::from_metadata("p", &json!(null)).expect("none"), Settings::default());
        assert_eq!(Settings::from_metadata("p", &json!({"other": 1})).expect("none"), Settings::default());
        let e = Settings::from_metadata("p", &json!({"cabin": {"backnd": "kvm"}})).expect_err("typo");
        assert!(e.to_string().contains("backnd"), "{e}");
        let s = Settings { policy: Some("missing.toml".into()), ..Settings::default() };
        assert!(s.policy(Path::new("/nonexistent")).is_err());
    }
}
