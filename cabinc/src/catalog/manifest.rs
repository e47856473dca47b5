//! Catalog manifests: the TOML format (version 1) that says how to build a benchmark statically,
//! which inputs to generate, how to run it and how to read its scores. Parsing rejects unknown keys;
//! `validate` checks what serde cannot (regexes compile, names are safe, placeholders are known).
//! The format is documented in docs/catalog.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;
use thiserror::Error;

/// The manifest format version this cabinc reads.
pub const FORMAT_VERSION: u32 = 1;

/// Why a manifest was refused.
#[derive(Debug, Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {path}: {source}")]
    Read {
        /// The manifest path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("manifest {path} is malformed: {message}")]
    Parse {
        /// The manifest path.
        path: String,
        /// What toml said.
        message: String,
    },
    /// A newer or older format.
    #[error("manifest {path} has format {found}, this cabinc reads format {FORMAT_VERSION}; help: set `format = {FORMAT_VERSION}` and check docs/catalog.md")]
    Version {
        /// The manifest path.
        path: String,
        /// The version found.
        found: u32,
    },
    /// A field holds a value that cannot be used.
    #[error("manifest {path}: {message}")]
    Invalid {
        /// The manifest path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A placeholder that nothing defines.
    #[error("unknown placeholder {{{0}}} in `{1}`; help: see the placeholder list in docs/catalog.md")]
    Placeholder(String, String),
}

/// One catalog entry as written in its manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version; must be [`FORMAT_VERSION`].
    pub format: u32,
    /// Entry name: lowercase letters, digits and `-`.
    pub name: String,
    /// One line for `cabinc catalog list`.
    pub description: String,
    /// Where the source tree comes from when `--source` is not given.
    #[serde(default)]
    pub source: Option<SourceSpec>,
    /// How to build the static executable.
    pub build: BuildSpec,
    /// Builds of the same program with different settings (default: one build named `default`).
    #[serde(default)]
    pub variants: BTreeMap<String, VariantSpec>,
    /// Generated input files.
    #[serde(default)]
    pub inputs: Vec<InputSpec>,
    /// How to run the program.
    pub run: RunSpec,
    /// How to read scores from a run.
    #[serde(default)]
    pub scores: Vec<ScoreSpec>,
    /// A server workload: the program is a server, a native client loads it and the scores come
    /// from the client's output (docs/catalog.md, "Server workloads").
    #[serde(default)]
    pub server: Option<ServerSpec>,
    /// The directory that relative paths and `{manifest_dir}` refer to; `cabinc catalog add`
    /// sets it to the original manifest's directory (default: the manifest's own directory).
    #[serde(default)]
    pub origin: Option<String>,
    /// The directory holding the manifest, or `origin` (not a TOML key).
    #[serde(skip)]
    pub dir: PathBuf,
}

/// Where a source tree comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// A directory, relative to the manifest's directory unless absolute.
    #[serde(default)]
    pub path: Option<String>,
    /// A crates.io crate whose packaged files hold the source (found through `cargo fetch`).
    #[serde(default)]
    pub cargo_crate: Option<String>,
    /// The crate's version requirement (e.g. `=5.3.0`).
    #[serde(default)]
    pub version: Option<String>,
    /// A directory inside the crate or path.
    #[serde(default)]
    pub subdir: Option<String>,
}

/// How to build.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSpec {
    /// Shell commands (`sh -c`), run in order in the build's work directory; placeholders are
    /// replaced by shell-quoted values. The last one must leave the executable at `{out}`.
    pub commands: Vec<String>,
    /// Require the result to be statically linked (default true).
    #[serde(default = "yes")]
    pub require_static: bool,
}

fn yes() -> bool {
    true
}

/// One build variant.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSpec {
    /// One line describing the variant.
    #[serde(default)]
    pub description: String,
    /// Extra placeholders for build commands and run arguments.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

/// A generated input file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// File name inside `{inputs}`; also `{input.NAME}`.
    pub name: String,
    /// How to generate it.
    pub generate: GenerateSpec,
}

/// Generator of an input file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateSpec {
    /// `random` (uniform bytes) or `text` (lines of words and numbers, good for sort and gzip).
    pub kind: GenerateKind,
    /// Size in bytes.
    pub bytes: u64,
    /// Seed of the deterministic generator.
    #[serde(default)]
    pub seed: u64,
}

/// Kinds of generated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GenerateKind {
    /// Uniform random bytes.
    Random,
    /// Text lines.
    Text,
}

/// How to run the program.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Arguments (after argv[0]); placeholders allowed.
    #[serde(default)]
    pub args: Vec<String>,
    /// argv[0] the program sees, native and confined (default: the executable's or image's
    /// file name); busybox picks its applet by it.
    #[serde(default)]
    pub arg0: Option<String>,
    /// A file to connect to stdin (default: none, i.e. /dev/null).
    #[serde(default)]
    pub stdin: Option<String>,
    /// Throw stdout away instead of capturing it (for programs that write bulk data).
    #[serde(default)]
    pub discard_stdout: bool,
    /// Environment variables `K=V` (runs otherwise get an empty environment).
    #[serde(default)]
    pub env: Vec<String>,
    /// Directories a confined run may read (`--allow-read`).
    #[serde(default)]
    pub allow_read: Vec<String>,
    /// Directories a confined run may write (`--allow-write`).
    #[serde(default)]
    pub allow_write: Vec<String>,
    /// Addresses a confined run may connect to (`--allow-connect`, `ADDR[/PREFIX]:PORTS`).
    #[serde(default)]
    pub allow_connect: Vec<String>,
    /// Addresses a confined run may bind (`--allow-listen`, same syntax).
    #[serde(default)]
    pub allow_listen: Vec<String>,
    /// The exit status that means success (default 0).
    #[serde(default)]
    pub expect_exit: i32,
    /// A regex the output (stdout then stderr) must match for the run to count as passed.
    #[serde(default)]
    pub expect_output: Option<String>,
    /// Seconds before a run is killed (default 900).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    900
}

/// A server workload: `run` starts the server (natively or confined), `{port}` is a free loopback
/// port chosen per run, and once `ready` accepts a connection the `client` command runs natively;
/// its exit status and output are what `run.expect_exit`, `run.expect_output` and the scores read.
/// Then the server gets SIGTERM, and SIGKILL after `stop_timeout_secs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// The TCP address that says the server is ready when it accepts a connection
    /// (default `127.0.0.1:{port}`).
    #[serde(default = "default_ready")]
    pub ready: String,
    /// Seconds to wait for `ready` before the run fails (default 60).
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout_secs: u64,
    /// The client command (argv, run natively, no shell); placeholders allowed. Its first word
    /// must be on PATH.
    pub client: Vec<String>,
    /// The Debian package that has the client, for the error when it is missing (default: the
    /// client's first word).
    #[serde(default)]
    pub client_package: Option<String>,
    /// Addresses a confined server may listen on (`cabinc run --allow-listen`, default
    /// `["127.0.0.1:{port}"]`).
    #[serde(default = "default_listen")]
    pub allow_listen: Vec<String>,
    /// Seconds between SIGTERM and SIGKILL when the server is stopped (default 5).
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_secs: u64,
}

fn default_ready() -> String {
    "127.0.0.1:{port}".into()
}

fn default_ready_timeout() -> u64 {
    60
}

fn default_listen() -> Vec<String> {
    vec!["127.0.0.1:{port}".into()]
}

fn default_stop_timeout() -> u64 {
    5
}

/// How a score is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreKind {
    /// A regex over the output: every match gives one score.
    Regex,
    /// The run's wall-clock time in seconds (lower is better).
    WallTime,
}

/// Which output stream a regex reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Standard output.
    #[default]
    Stdout,
    /// Standard error.
    Stderr,
}

/// One score (or a family of scores, when the regex has a `name` group).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreSpec {
    /// How the score is read.
    pub kind: ScoreKind,
    /// Score name; with a `(?P<name>…)` group in the regex, a prefix for each match's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Regex (multi-line mode) with a `(?P<value>…)` group and optionally `(?P<name>…)`; a
    /// `(?P<unit>…)` group (`ns`, `us`, `ms` or `s`) converts a duration to the score's `unit`,
    /// which must then be one of those.
    #[serde(default)]
    pub regex: Option<String>,
    /// Stream the regex reads.
    #[serde(default)]
    pub stream: Stream,
    /// Unit shown in tables (`s` for wall time).
    #[serde(default)]
    pub unit: Option<String>,
    /// Whether bigger numbers are better (default: false for wall time, true otherwise).
    #[serde(default)]
    pub higher_is_better: Option<bool>,
}

impl ScoreSpec {
    /// Whether a bigger value is better.
    pub fn higher_is_better(&self) -> bool {
        self.higher_is_better.unwrap_or(self.kind == ScoreKind::Regex)
    }

    /// The unit to show.
    pub fn unit(&self) -> &str {
        match (&self.unit, self.kind) {
            (Some(u), _) => u,
            (None, ScoreKind::WallTime) => "s",
            (None, ScoreKind::Regex) => "",
        }
    }

    /// The compiled regex (validated at load time).
    pub fn compiled(&self) -> Option<Regex> {
        self.regex.as_deref().and_then(|r| regex::RegexBuilder::new(r).multi_line(true).build().ok())
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !s.starts_with('-')
}

impl Manifest {
    /// Parses and validates manifest text; `path` names it in errors and `dir` anchors relative paths.
    pub fn parse(text: &str, path: &str, dir: &Path) -> Result<Manifest, ManifestError> {
        // Read the version first so that a future format fails with a version message, not a key error.
        #[derive(Deserialize)]
        struct VersionOnly {
            format: Option<u32>,
        }
        let v: VersionOnly = toml::from_str(text)
            .map_err(|e| ManifestError::Parse { path: path.into(), message: e.message().to_string() })?;
        match v.format {
            Some(FORMAT_VERSION) => {}
            Some(found) => return Err(ManifestError::Version { path: path.into(), found }),
            None => {
                return Err(ManifestError::Invalid {
                    path: path.into(),
                    message: format!("missing `format = {FORMAT_VERSION}`"),
                })
            }
        }
        let mut m: Manifest = toml::from_str(text)
            .map_err(|e| ManifestError::Parse { path: path.into(), message: e.to_string().trim().into() })?;
        m.dir = match &m.origin {
            Some(o) => PathBuf::from(o),
            None => dir.to_path_buf(),
        };
        m.validate(path)?;
        Ok(m)
    }

    /// Reads and parses a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ManifestError::Read { path: path.to_path_buf(), source })?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        Manifest::parse(&text, &path.display().to_string(), &dir)
    }

    fn validate(&self, path: &str) -> Result<(), ManifestError> {
        let bad = |message: String| ManifestError::Invalid { path: path.into(), message };
        if !valid_name(&self.name) {
            return Err(bad(format!(
                "name `{}` must be 1-64 lowercase letters, digits, `-` or `_`",
                self.name
            )));
        }
        for v in self.variants.keys() {
            if !valid_name(v) {
                return Err(bad(format!("variant `{v}` must be lowercase letters, digits, `-` or `_`")));
            }
        }
        if self.build.commands.is_empty() {
            return Err(bad("build.commands is empty".into()));
        }
        if let Some(s) = &self.source {
            if s.path.is_some() == s.cargo_crate.is_some() {
                return Err(bad("source needs exactly one of `path` or `cargo_crate`".into()));
            }
            if s.version.is_some() && s.cargo_crate.is_none() {
                return Err(bad("source.version only applies to `cargo_crate`".into()));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for i in &self.inputs {
            if !valid_name(&i.name.replace('.', "_")) || i.name.starts_with('.') {
                return Err(bad(format!("input name `{}` must be a plain file name", i.name)));
            }
            if !seen.insert(&i.name) {
                return Err(bad(format!("input `{}` is defined twice", i.name)));
            }
            if i.generate.bytes == 0 || i.generate.bytes > 16 << 30 {
                return Err(bad(format!("input `{}`: bytes must be between 1 and 16 GiB", i.name)));
            }
        }
        for s in &self.scores {
            match s.kind {
                ScoreKind::Regex => {
                    let Some(r) = &s.regex else {
                        return Err(bad("a score of kind `regex` needs `regex`".into()));
                    };
                    let re = regex::RegexBuilder::new(r)
                        .multi_line(true)
                        .build()
                        .map_err(|e| bad(format!("score regex `{r}` does not compile: {e}")))?;
                    let groups: Vec<&str> = re.capture_names().flatten().collect();
                    if !groups.contains(&"value") {
                        return Err(bad(format!("score regex `{r}` has no `(?P<value>...)` group")));
                    }
                    if !groups.contains(&"name") && s.name.is_none() {
                        return Err(bad(format!(
                            "score regex `{r}` needs a `(?P<name>...)` group or a `name` key"
                        )));
                    }
                    if groups.contains(&"unit") && duration_scale(s.unit()).is_none() {
                        return Err(bad(format!(
                            "score regex `{r}` has a `unit` group: its `unit` must be ns, us, ms or s"
                        )));
                    }
                }
                ScoreKind::WallTime => {
                    if s.regex.is_some() {
                        return Err(bad("a `wall_time` score takes no regex".into()));
                    }
                    if duration_scale(s.unit()).is_none() {
                        return Err(bad(format!(
                            "a `wall_time` score's unit must be ns, us, ms or s, not `{}`",
                            s.unit()
                        )));
                    }
                }
            }
        }
        if let Some(srv) = &self.server {
            if srv.client.is_empty() || srv.client[0].trim().is_empty() {
                return Err(bad("server.client needs a command".into()));
            }
            if srv.ready_timeout_secs == 0 || srv.stop_timeout_secs == 0 {
                return Err(bad("server timeouts must be at least 1 second".into()));
            }
        }
        for r in self.run.allow_connect.iter().chain(&self.run.allow_listen) {
            cabin_policy::net::parse_rule(r)
                .map_err(|e| bad(format!("run.allow_connect/allow_listen: {e}")))?;
        }
        if let Some(r) = &self.run.expect_output {
            Regex::new(r).map_err(|e| bad(format!("run.expect_output `{r}` does not compile: {e}")))?;
        }
        // Every placeholder must be known, for every variant.
        for variant in self.variant_names() {
            let vars = self.placeholder_names(&variant);
            let mut texts: Vec<&String> = self.build.commands.iter().collect();
            texts.extend(self.run.args.iter());
            texts.extend(self.run.stdin.iter());
            texts.extend(self.run.env.iter());
            texts.extend(self.run.allow_read.iter());
            texts.extend(self.run.allow_write.iter());
            if let Some(srv) = &self.server {
                texts.push(&srv.ready);
                texts.extend(srv.client.iter());
                texts.extend(srv.allow_listen.iter());
            }
            for t in texts {
                for p in placeholders(t).map_err(&bad)? {
                    if !vars.iter().any(|v| v == p) {
                        return Err(ManifestError::Placeholder(p.to_string(), t.clone()));
                    }
                }
            }
        }
        Ok(())
    }

    /// The directory relative paths refer to.
    pub fn origin_dir(&self) -> PathBuf {
        self.dir.clone()
    }

    /// The variant names (one named `default` when the manifest declares none).
    pub fn variant_names(&self) -> Vec<String> {
        if self.variants.is_empty() {
            vec!["default".to_string()]
        } else {
            self.variants.keys().cloned().collect()
        }
    }

    /// The vars of one variant.
    pub fn variant_vars(&self, variant: &str) -> BTreeMap<String, String> {
        self.variants.get(variant).map(|v| v.vars.clone()).unwrap_or_default()
    }

    fn placeholder_names(&self, variant: &str) -> Vec<String> {
        let mut v: Vec<String> = STANDARD_PLACEHOLDERS.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        v.extend(self.inputs.iter().map(|i| format!("input.{}", i.name)));
        v.extend(self.variant_vars(variant).into_keys());
        if self.server.is_some() {
            v.push("port".into());
        }
        v
    }
}

/// Seconds per unit of a duration unit name (`ns`, `us`, `ms`, `s`).
pub fn duration_scale(unit: &str) -> Option<f64> {
    match unit {
        "ns" => Some(1e-9),
        "us" | "µs" => Some(1e-6),
        "ms" => Some(1e-3),
        "s" => Some(1.0),
        _ => None,
    }
}

/// Placeholders every manifest may use.
pub const STANDARD_PLACEHOLDERS: &[&str] =
    &["source", "out", "work", "cc", "manifest_dir", "cache", "variant", "inputs", "scratch", "name"];

/// The placeholder names in `text` (`{name}`; `{{` and `}}` are literal braces).
pub fn placeholders(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' if b.get(i + 1) == Some(&b'{') => i += 2,
            b'}' if b.get(i + 1) == Some(&b'}') => i += 2,
            b'{' => {
                let end = text[i..].find('}').ok_or_else(|| format!("unclosed `{{` in `{text}`"))?;
                out.push(&text[i + 1..i + end]);
                i += end + 1;
            }
            _ => i += 1,
        }
    }
    Ok(out)
}

/// Replaces placeholders in `text` with values; `quote` shell-quotes each value (for commands).
pub fn expand(text: &str, vars: &BTreeMap<String, String>, quote: bool) -> Result<String, ManifestError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(['{', '}']) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if let Some(after) = tail.strip_prefix('}') {
            out.push('}');
            rest = after;
            continue;
        }
        let end = tail.find('}').ok_or_else(|| ManifestError::Placeholder(tail.into(), text.into()))?;
        let name = &tail[1..end];
        let value = vars.get(name).ok_or_else(|| ManifestError::Placeholder(name.into(), text.into()))?;
        if quote {
            out.push_str(&shell_quote(value));
        } else {
            out.push_str(value);
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Quotes a value for `sh` (left bare when it holds only safe characters).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
format = 1
name = "null-syscall"
description = "getppid loop"
source = { path = "../bench/micro" }
build = { commands = ["{cc} -O2 -static -o {out} {source}/null.c"] }
[[inputs]]
name = "data.bin"
generate = { kind = "random", bytes = 1048576, seed = 1 }
[run]
args = ["{input.data.bin}", "1000"]
[[scores]]
kind = "regex"
regex = '^(?P<name>\w+): (?P<value>[0-9.]+) ns/op$'
unit = "ns/op"
higher_is_better = false
[[scores]]
kind = "wall_time"
name = "wall"
"#;

    fn parse(t: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(t, "test.toml", Path::new("/tmp"))
    }

    #[test]
    fn parses_a_good_manifest() {
        let m = parse(GOOD).expect("good manifest");
        assert_eq!(m.name, "null-syscall");
        assert_eq!(m.variant_names(), vec!["default"]);
        assert_eq!(m.scores.len(), 2);
        assert!(!m.scores[0].higher_is_better());
        assert!(!m.scores[1].higher_is_better());
        assert_eq!(m.scores[1].unit(), "s");
        assert_eq!(m.inputs[0].generate.kind, GenerateKind::Random);
        assert_eq!(m.run.timeout_secs, 900);
    }

    #[test]
    fn rejects_unknown_keys() {
        let t = GOOD.replace("[run]", "[run]\nargz = []");
        let e = parse(&t).expect_err("unknown key");
        assert!(e.to_string().contains("argz"), "{e}");
        let t = format!("colour = \"red\"\n{GOOD}");
        assert!(parse(&t).is_err());
    }

    /// `allow_connect` / `allow_listen` are checked at load, naming the bad rule.
    #[test]
    fn network_rules_are_checked() {
        let m =
            parse(&GOOD.replace(
                "[run]",
                "[run]\nallow_listen = [\"127.0.0.1:8080\"]\nallow_connect = [\"[::1]:*\"]",
            ))
            .expect("good rules");
        assert_eq!(m.run.allow_listen, ["127.0.0.1:8080"]);
        let e =
            parse(&GOOD.replace("[run]", "[run]\nallow_connect = [\"example.com:80\"]")).expect_err("host");
        assert!(e.to_string().contains("example.com") && e.to_string().contains("host name"), "{e}");
    }

    #[test]
    fn rejects_other_versions_and_missing_version() {
        let e = parse(&GOOD.replace("format = 1", "format = 2")).expect_err("v2");
        assert!(matches!(e, ManifestError::Version { found: 2, .. }), "{e}");
        let e = parse(&GOOD.replace("format = 1", "")).expect_err("none");
        assert!(e.to_string().contains("format"), "{e}");
    }

    #[test]
    fn rejects_bad_regexes_and_placeholders() {
        let e = parse(&GOOD.replace("(?P<value>[0-9.]+)", "([0-9.]+)")).expect_err("no value");
        assert!(e.to_string().contains("value"), "{e}");
        let e = parse(&GOOD.replace("(?P<name>\\w+)", "(")).expect_err("bad regex");
        assert!(e.to_string().contains("compile"), "{e}");
        let e = parse(&GOOD.replace("{input.data.bin}", "{nope}")).expect_err("placeholder");
        assert!(matches!(e, ManifestError::Placeholder(ref p, _) if p == "nope"), "{e}");
        let e = parse(&GOOD.replace("null-syscall", "Bad Name")).expect_err("name");
        assert!(e.to_string().contains("name"), "{e}");
    }

    #[test]
    fn variants_add_placeholders() {
        let t = GOOD.replace("-O2", "{opt}")
            + "[variants.fast]\nvars = { opt = \"-O3\" }\n[variants.slow]\nvars = { opt = \"-O0\" }\n";
        let m = parse(&t).expect("variants");
        assert_eq!(m.variant_names(), vec!["fast", "slow"]);
        let t = GOOD.replace("-O2", "{opt}") + "[variants.fast]\nvars = { opt = \"-O3\" }\n[variants.slow]\n";
        assert!(parse(&t).is_err(), "a variant without the var is refused");
    }

    #[test]
    fn expands_and_quotes() {
        let mut v = BTreeMap::new();
        v.insert("out".to_string(), "/tmp/a b".to_string());
        v.insert("cc".to_string(), "gcc".to_string());
        let s = expand("{cc} -o {out} x{{y}}", &v, true).expect("expand");
        assert_eq!(s, "gcc -o '/tmp/a b' x{y}");
        assert_eq!(expand("{out}", &v, false).expect("raw"), "/tmp/a b");
        assert!(expand("{missing}", &v, false).is_err());
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(placeholders("{a} {{b}} {c.d}").expect("p"), vec!["a", "c.d"]);
    }
}
