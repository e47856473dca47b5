//! Cargo's JSON messages (`--message-format=json-render-diagnostics`), read with
//! `cargo_metadata`: the executables built and the build's verdict.

use std::path::PathBuf;

use cargo_metadata::Message;

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
    for message in Message::parse_stream(stdout.as_bytes()).flatten() {
        match message {
            Message::CompilerArtifact(a) => {
                let Some(exe) = a.executable else { continue };
                let path = PathBuf::from(exe);
                if !out.executables.iter().any(|e| e.path == path) {
                    out.executables.push(Executable {
                        package_id: a.package_id.repr,
                        name: a.target.name,
                        kind: a.target.kind.first().map(ToString::to_string).unwrap_or_default(),
                        path,
                    });
                }
            }
            Message::BuildFinished(f) => out.success = Some(f.success),
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
        // Lines as cargo 1.95 prints them (a library, a compiler message, a
        // build script, the binary, the verdict), and one that is not JSON.
        let text = r#"{"reason":"compiler-artifact","package_id":"path+file:///s#lib@0.1.0","manifest_path":"/s/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"lib","src_path":"/s/src/lib.rs","edition":"2021","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":false},"features":[],"filenames":["/t/liblib.rlib"],"executable":null,"fresh":false}
{"reason":"compiler-message","package_id":"x","message":{}}
not json at all
{"reason":"compiler-artifact","package_id":"path+file:///s#app@0.1.0","manifest_path":"/s/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"app","src_path":"/s/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":false},"features":[],"filenames":["/t/x86_64-unknown-linux-gnu/debug/app"],"executable":"/t/x86_64-unknown-linux-gnu/debug/app","fresh":false}
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
