//! Cargo's JSON messages (`--message-format=json-render-diagnostics`): the executables built.

use serde::Deserialize;
use std::path::PathBuf;

/// One executable cargo built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executable {
    /// Cargo's package id.
    pub package_id: String,
    /// The target's name.
    pub name: String,
    /// Target kind (`bin`, `example`, `test`, …).
    pub kind: String,
    /// The file.
    pub path: PathBuf,
}

#[derive(Debug, Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    package_id: Option<String>,
    #[serde(default)]
    target: Option<Target>,
    #[serde(default)]
    executable: Option<PathBuf>,
    #[serde(default)]
    success: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct Target {
    name: String,
    #[serde(default)]
    kind: Vec<String>,
}

/// What a build printed.
#[derive(Debug, Default, Clone)]
pub struct BuildMessages {
    /// Executables, in the order cargo reported them.
    pub executables: Vec<Executable>,
    /// The `build-finished` verdict, when seen.
    pub success: Option<bool>,
}

/// Reads cargo's JSON lines; lines that are not JSON messages are ignored.
pub fn parse(stdout: &str) -> BuildMessages {
    let mut out = BuildMessages::default();
    for line in stdout.lines() {
        let Ok(m) = serde_json::from_str::<Message>(line) else { continue };
        match m.reason.as_str() {
            "compiler-artifact" => {
                if let (Some(exe), Some(t), Some(id)) = (m.executable, m.target, m.package_id) {
                    let kind = t.kind.first().cloned().unwrap_or_default();
                    if !out.executables.iter().any(|e| e.path == exe) {
                        out.executables.push(Executable { package_id: id, name: t.name, kind, path: exe });
                    }
                }
            }
            "build-finished" => out.success = m.success,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_executables_only() {
        let text = r#"{"reason":"compiler-artifact","package_id":"path+file:///s#lib@0.1.0","target":{"name":"lib","kind":["lib"]},"executable":null,"filenames":["/t/liblib.rlib"]}
{"reason":"compiler-message","package_id":"x","message":{}}
not json at all
{"reason":"compiler-artifact","package_id":"path+file:///s#app@0.1.0","target":{"name":"app","kind":["bin"],"src_path":"/s/src/main.rs"},"executable":"/t/x86_64-unknown-linux-gnu/debug/app","fresh":false}
{"reason":"build-script-executed","package_id":"x"}
{"reason":"build-finished","success":true}"#;
        let m = parse(text);
        assert_eq!(m.success, Some(true));
        assert_eq!(m.executables.len(), 1);
        let e = &m.executables[0];
        assert_eq!(e.name, "app");
        assert_eq!(e.kind, "bin");
        assert_eq!(e.path, PathBuf::from("/t/x86_64-unknown-linux-gnu/debug/app"));
        assert_eq!(e.package_id, "path+file:///s#app@0.1.0");
    }

    #[test]
    fn failure_is_seen() {
        assert_eq!(parse(r#"{"reason":"build-finished","success":false}"#).success, Some(false));
        assert_eq!(parse("").success, None);
    }
}
