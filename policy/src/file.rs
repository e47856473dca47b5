//! The policy file: TOML in, a checked [`Policy`] out.
//!
//! Parsing is two-step: serde reads the text into raw structs that keep the
//! span of every value (`toml::Spanned`) and reject unknown keys
//! (`deny_unknown_fields`); then each value is checked (call names, groups,
//! errno names, sizes, durations) and any error is reported at its
//! `file:line:column` with a `help:` when there is an obvious fix.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use super::net::{self, NetPolicy};
use super::{
    errno, groups, names, Action, Cond, Entry, Env, Limits, ListEntry, Loc, Mode, Op, Paths, Policy, Rule,
    DEFAULT_DENY_ERRNO, DEFAULT_ERRNO, VERSION,
};

/// Why a policy file was refused.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Something in the file is wrong, at a known place.
    #[error("{source_name}:{line}:{column}: {message}")]
    At {
        /// The file.
        source_name: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
        /// How to fix it, when known.
        help: Option<String>,
    },
}

impl PolicyError {
    /// The `help:` text, when there is one.
    pub fn help(&self) -> Option<&str> {
        match self {
            PolicyError::At { help, .. } => help.as_deref(),
            PolicyError::Read { .. } => None,
        }
    }

    /// `(line, column)` of the problem, when it has a place.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            PolicyError::At { line, column, .. } => Some((*line, *column)),
            PolicyError::Read { .. } => None,
        }
    }
}

/// 1-based (line, column) of byte offset `at` in `text` (column counts characters).
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(1, |s| s.chars().count() + 1);
    (line, column)
}

struct Ctx<'a> {
    source: &'a str,
    text: &'a str,
}

impl Ctx<'_> {
    fn loc(&self, span: &Range<usize>) -> Loc {
        let (line, column) = line_col(self.text, span.start);
        Loc { line, column }
    }

    fn err(&self, span: &Range<usize>, message: impl Into<String>, help: Option<String>) -> PolicyError {
        let (line, column) = line_col(self.text, span.start);
        PolicyError::At { source_name: self.source.to_string(), line, column, message: message.into(), help }
    }
}

// ---- raw form, as serde reads it ----

#[derive(Deserialize)]
struct VersionOnly {
    version: Option<Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPolicy {
    #[allow(dead_code)]
    version: toml::Value,
    mode: Option<Spanned<RawMode>>,
    default: Option<RawDefault>,
    syscalls: Option<RawSyscalls>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    paths: Option<RawPaths>,
    limits: Option<RawLimits>,
    network: Option<RawNetwork>,
    env: Option<RawEnv>,
    view: Option<RawView>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawView {
    root: Option<Spanned<String>>,
    #[serde(default)]
    root_read_only: bool,
    #[serde(default)]
    bind: Vec<Spanned<String>>,
    #[serde(default)]
    tmpfs: Vec<Spanned<String>>,
    chdir: Option<Spanned<String>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum RawMode {
    Enforce,
    Complain,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum RawAction {
    Allow,
    Deny,
    Kill,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawDefault {
    action: Option<Spanned<RawAction>>,
    errno: Option<Spanned<RawErrno>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawErrno {
    Name(String),
    Number(i64),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSys {
    Name(String),
    Number(i64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSyscalls {
    #[serde(default)]
    allow: Vec<Spanned<RawSys>>,
    #[serde(default)]
    deny: Vec<Spanned<RawSys>>,
    deny_errno: Option<Spanned<RawErrno>>,
    #[serde(default)]
    kill: Vec<Spanned<RawSys>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawInt {
    Int(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCond {
    arg: Spanned<i64>,
    op: Spanned<Op>,
    mask: Option<Spanned<RawInt>>,
    value: Spanned<RawInt>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRule {
    syscall: Spanned<RawSys>,
    action: Option<Spanned<RawAction>>,
    errno: Option<Spanned<RawErrno>>,
    arg: Option<Spanned<i64>>,
    op: Option<Spanned<Op>>,
    mask: Option<Spanned<RawInt>>,
    value: Option<Spanned<RawInt>>,
    #[serde(default)]
    all: Vec<Spanned<RawCond>>,
    comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPaths {
    #[serde(default)]
    read: Vec<Spanned<String>>,
    #[serde(default)]
    write: Vec<Spanned<String>>,
    #[serde(default)]
    set_id: bool,
    exec: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawLimits {
    memory: Option<Spanned<RawInt>>,
    open_files: Option<Spanned<RawInt>>,
    threads: Option<Spanned<RawInt>>,
    processes: Option<Spanned<RawInt>>,
    cpu_time: Option<Spanned<RawInt>>,
    wall_time: Option<Spanned<RawInt>>,
    bytes_written: Option<Spanned<RawInt>>,
    file_size: Option<Spanned<RawInt>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawNetwork {
    #[serde(default)]
    connect: Vec<Spanned<String>>,
    #[serde(default)]
    listen: Vec<Spanned<String>>,
    #[serde(default)]
    unix: Vec<Spanned<String>>,
    #[serde(default, rename = "abstract")]
    abstract_names: Vec<Spanned<String>>,
    resolver: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawEnv {
    #[serde(default)]
    set: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pass: Vec<Spanned<String>>,
}

// ---- checks ----

/// Parses and checks a policy file's text.
pub fn parse(source: &str, text: &str) -> Result<Policy, PolicyError> {
    let cx = Ctx { source, text };
    let toml_err = |e: toml::de::Error| {
        let span = e.span().unwrap_or(0..0);
        let msg = e.message().trim().to_string();
        let help = if msg.starts_with("unknown field") {
            Some("remove the key or fix its spelling; docs/policy.md lists every key".to_string())
        } else {
            None
        };
        cx.err(&span, msg, help)
    };
    let v: VersionOnly = toml::from_str(text).map_err(toml_err)?;
    match v.version {
        None => {
            return Err(cx.err(
                &(0..0),
                "missing `version`",
                Some(format!("start the file with `version = {VERSION}`")),
            ))
        }
        Some(ver) => {
            if ver.get_ref().as_integer() != Some(i64::from(VERSION)) {
                return Err(cx.err(
                    &ver.span(),
                    format!("unsupported policy version {}", ver.get_ref()),
                    Some(format!("this cabinc reads `version = {VERSION}`")),
                ));
            }
        }
    }
    let raw: RawPolicy = toml::from_str(text).map_err(toml_err)?;

    let mut p =
        Policy { source: source.to_string(), digest: super::digest(text.as_bytes()), ..Policy::default() };
    if let Some(m) = raw.mode {
        p.mode = match m.into_inner() {
            RawMode::Enforce => Mode::Enforce,
            RawMode::Complain => Mode::Complain,
        };
    }
    if let Some(d) = raw.default {
        let errno = match &d.errno {
            Some(e) => Some(check_errno(&cx, e)?),
            None => None,
        };
        let action = d.action.as_ref().map(|a| *a.get_ref()).unwrap_or(RawAction::Deny);
        if action != RawAction::Deny {
            if let Some(e) = &d.errno {
                return Err(cx.err(
                    &e.span(),
                    "`errno` only applies when the default action is \"deny\"",
                    None,
                ));
            }
        }
        p.default = match action {
            RawAction::Allow => Action::Allow,
            RawAction::Deny => Action::Deny(errno.unwrap_or(DEFAULT_ERRNO)),
            RawAction::Kill => Action::Kill,
        };
    }
    if let Some(s) = raw.syscalls {
        p.allow = check_list(&cx, &s.allow)?;
        p.deny = check_list(&cx, &s.deny)?;
        p.kill = check_list(&cx, &s.kill)?;
        if let Some(e) = &s.deny_errno {
            p.deny_errno = check_errno(&cx, e)?;
        }
    }
    for r in &raw.rule {
        p.rules.push(check_rule(&cx, r)?);
    }
    if let Some(v) = &raw.view {
        p.view = check_view(&cx, v)?;
    }
    if let Some(paths) = raw.paths {
        p.paths =
            Paths {
                read: check_paths(&cx, &paths.read)?,
                write: check_paths(&cx, &paths.write)?,
                set_id: paths.set_id,
                exec_images_only: match &paths.exec {
                    None => false,
                    Some(v) => match v.get_ref().as_str() {
                        "any" => false,
                        "images" => true,
                        other => return Err(cx.err(
                            &v.span(),
                            format!("unknown exec setting `{other}`"),
                            Some(
                                "use \"images\" (execve runs Cabin images only) or \"any\" (plain static \
                                 executables too, through the image cache: the default)"
                                    .into(),
                            ),
                        )),
                    },
                },
            };
    }
    if let Some(l) = raw.limits {
        p.limits = Limits {
            memory: opt(&l.memory, |v| check_size(&cx, v))?,
            open_files: opt(&l.open_files, |v| check_count(&cx, v))?,
            threads: opt(&l.threads, |v| check_count(&cx, v))?,
            processes: opt(&l.processes, |v| check_count(&cx, v))?,
            cpu_time: opt(&l.cpu_time, |v| check_duration(&cx, v))?,
            wall_time: opt(&l.wall_time, |v| check_duration(&cx, v))?,
            bytes_written: opt(&l.bytes_written, |v| check_size(&cx, v))?,
            file_size: opt(&l.file_size, |v| check_size(&cx, v))?,
        };
    }
    if let Some(n) = raw.network {
        p.network = check_network(&cx, &n)?;
    }
    if let Some(env) = raw.env {
        let mut e = Env::default();
        for (k, v) in &env.set {
            if !valid_env_name(k) {
                return Err(cx.err(
                    &v.span(),
                    format!("`{k}` is not a valid environment variable name"),
                    None,
                ));
            }
            if v.get_ref().contains('\0') {
                return Err(cx.err(&v.span(), "an environment value cannot contain a NUL byte", None));
            }
            e.set.insert(k.clone(), v.get_ref().clone());
        }
        for k in &env.pass {
            if !valid_env_name(k.get_ref()) {
                return Err(cx.err(
                    &k.span(),
                    format!("`{}` is not a valid environment variable name", k.get_ref()),
                    None,
                ));
            }
            e.pass.push(k.get_ref().clone());
        }
        p.env = e;
    }
    check_enforceable(&cx, &p)?;
    p.warnings = warnings(&p);
    Ok(p)
}

/// Refuses a rule that no backend could enforce: one that would refuse a
/// call the system-call table marks [`names::Serve::Always`] (`exit`,
/// `exit_group`, `rt_sigreturn`), by name, number, group or `[[rule]]`. Every other rule a
/// file can state is enforced on every backend (docs/policy.md).
fn check_enforceable(cx: &Ctx<'_>, p: &Policy) -> Result<(), PolicyError> {
    let always = |nr: u64| names::serve(nr) == names::Serve::Always;
    let why = "a program can always end itself (a fault ends it too) and return from its own signal \
               handler (rt_sigreturn only sets ring-3 state it could set itself), so no backend could enforce \
               that; exit, exit_group and rt_sigreturn are always served";
    let at = |loc: Loc, message: String, help: String| PolicyError::At {
        source_name: cx.source.to_string(),
        line: loc.line,
        column: loc.column,
        message,
        help: Some(help),
    };
    for (list, entries) in [("deny", &p.deny), ("kill", &p.kill)] {
        for e in entries {
            let hit: Vec<String> =
                e.entry.numbers().into_iter().filter(|&nr| always(nr)).map(names::display).collect();
            if hit.is_empty() {
                continue;
            }
            return Err(match &e.entry {
                Entry::Syscall(_) => at(
                    e.loc,
                    format!("`{list}` cannot refuse {}: {why}", hit.join(", ")),
                    format!("remove {} from `{list}`", e.entry.spelling()),
                ),
                Entry::Group(g) => at(
                    e.loc,
                    format!("`@{}` in `{list}` includes {}, which cannot be refused: {why}", g.name, hit.join(" and ")),
                    format!(
                        "list the members of @{} you mean to refuse by name (`cabinc policy groups` shows them)",
                        g.name
                    ),
                ),
            });
        }
    }
    for r in &p.rules {
        if always(r.nr) && r.action != Action::Allow {
            return Err(at(
                r.loc,
                format!("a [[rule]] cannot refuse {}: {why}", names::display(r.nr)),
                "remove the rule".into(),
            ));
        }
    }
    Ok(())
}

fn opt<T, U>(
    v: &Option<Spanned<T>>,
    f: impl FnOnce(&Spanned<T>) -> Result<U, PolicyError>,
) -> Result<Option<U>, PolicyError> {
    v.as_ref().map(f).transpose()
}

fn valid_env_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_errno(cx: &Ctx<'_>, e: &Spanned<RawErrno>) -> Result<i32, PolicyError> {
    match e.get_ref() {
        RawErrno::Name(n) => errno::number(n).ok_or_else(|| {
            cx.err(
                &e.span(),
                format!("unknown errno name `{n}`"),
                Some("use a name such as \"EPERM\", \"EACCES\", \"ENOSYS\", or a number 1..=4095".into()),
            )
        }),
        RawErrno::Number(n) => match i32::try_from(*n) {
            Ok(v) if (1..=errno::MAX_ERRNO).contains(&v) => Ok(v),
            _ => Err(cx.err(&e.span(), format!("errno {n} is out of range"), Some("use 1..=4095".into()))),
        },
    }
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (distance(word, c), c))
        .filter(|&(d, _)| d <= 2)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn check_sys(cx: &Ctx<'_>, s: &Spanned<RawSys>, groups_ok: bool) -> Result<Entry, PolicyError> {
    match s.get_ref() {
        RawSys::Number(n) => match u64::try_from(*n) {
            Ok(nr) if nr < super::compile::TABLE_SIZE as u64 => Ok(Entry::Syscall(nr)),
            _ => Err(cx.err(
                &s.span(),
                format!("system call number {n} is out of range"),
                Some(format!("x86-64 numbers are 0..={}", names::MAX_KNOWN)),
            )),
        },
        RawSys::Name(n) => {
            if let Some(g) = n.strip_prefix('@') {
                if !groups_ok {
                    return Err(cx.err(
                        &s.span(),
                        "a rule names one system call, not a group",
                        Some("list the group under [syscalls] instead, or write one rule per call".into()),
                    ));
                }
                return groups::find(g).map(Entry::Group).ok_or_else(|| {
                    let help = match suggest(g, groups::GROUPS.iter().map(|g| g.name)) {
                        Some(s) => format!("did you mean `@{s}`? docs/policy.md lists the groups"),
                        None => "docs/policy.md lists the groups".to_string(),
                    };
                    cx.err(&s.span(), format!("unknown group `{n}`"), Some(help))
                });
            }
            names::number(n).map(Entry::Syscall).ok_or_else(|| {
                let help = match suggest(n, names::TABLE.iter().map(|s| s.name)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "use an x86-64 system call name (as in `man 2 syscalls`) or a number".into(),
                };
                cx.err(&s.span(), format!("unknown x86-64 system call `{n}`"), Some(help))
            })
        }
    }
}

fn check_list(cx: &Ctx<'_>, list: &[Spanned<RawSys>]) -> Result<Vec<ListEntry>, PolicyError> {
    list.iter().map(|s| Ok(ListEntry { entry: check_sys(cx, s, true)?, loc: cx.loc(&s.span()) })).collect()
}

fn parse_u64_text(t: &str) -> Option<u64> {
    let t = t.trim().replace('_', "");
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        t.parse().ok()
    }
}

fn check_value(cx: &Ctx<'_>, v: &Spanned<RawInt>) -> Result<u64, PolicyError> {
    match v.get_ref() {
        // Negative numbers are the 64-bit two's complement (-100 is AT_FDCWD as the kernel sees a
        // sign-extended int).
        RawInt::Int(i) => Ok(*i as u64),
        RawInt::Text(t) => parse_u64_text(t).ok_or_else(|| {
            cx.err(
                &v.span(),
                format!("`{t}` is not a number"),
                Some("write an integer, or a string holding \"0x…\" hex or a decimal up to 2^64-1".into()),
            )
        }),
    }
}

fn check_cond(
    cx: &Ctx<'_>,
    arg: &Spanned<i64>,
    op: &Spanned<Op>,
    mask: Option<&Spanned<RawInt>>,
    value: &Spanned<RawInt>,
) -> Result<Cond, PolicyError> {
    let a = *arg.get_ref();
    if !(0..=5).contains(&a) {
        return Err(cx.err(
            &arg.span(),
            format!("argument index {a} is out of range"),
            Some("use 0..=5".into()),
        ));
    }
    let op = *op.get_ref();
    let mask = match (op, mask) {
        (Op::MaskedEq, Some(m)) => check_value(cx, m)?,
        (Op::MaskedEq, None) => {
            return Err(cx.err(&value.span(), "op \"masked-eq\" needs a `mask`", None));
        }
        (_, Some(m)) => {
            return Err(cx.err(&m.span(), "`mask` only applies to op \"masked-eq\"", None));
        }
        (_, None) => u64::MAX,
    };
    Ok(Cond { arg: a as u8, op, mask, value: check_value(cx, value)? })
}

fn check_rule(cx: &Ctx<'_>, r: &Spanned<RawRule>) -> Result<Rule, PolicyError> {
    let span = r.span();
    let r = r.get_ref();
    let nr = match check_sys(cx, &r.syscall, false)? {
        Entry::Syscall(nr) => nr,
        Entry::Group(_) => return Err(cx.err(&r.syscall.span(), "a rule names one system call", None)),
    };
    let action_kind = r.action.as_ref().map(|a| *a.get_ref()).unwrap_or(RawAction::Allow);
    let action = match action_kind {
        RawAction::Allow => Action::Allow,
        RawAction::Deny => Action::Deny(match &r.errno {
            Some(e) => check_errno(cx, e)?,
            None => DEFAULT_DENY_ERRNO,
        }),
        RawAction::Kill => Action::Kill,
    };
    if action_kind != RawAction::Deny {
        if let Some(e) = &r.errno {
            return Err(cx.err(&e.span(), "`errno` only applies to action \"deny\"", None));
        }
    }
    let mut conds = Vec::new();
    match (&r.arg, &r.op, &r.value) {
        (None, None, None) => {
            if let Some(m) = &r.mask {
                return Err(cx.err(&m.span(), "`mask` without `arg`, `op` and `value`", None));
            }
        }
        (Some(arg), Some(op), Some(value)) => conds.push(check_cond(cx, arg, op, r.mask.as_ref(), value)?),
        _ => {
            return Err(cx.err(
                &span,
                "an argument condition needs all of `arg`, `op` and `value`",
                Some(
                    "e.g. { syscall = \"openat\", arg = 2, op = \"masked-eq\", mask = 3, value = 0 }".into(),
                ),
            ))
        }
    }
    for c in &r.all {
        let cs = c.get_ref();
        conds.push(check_cond(cx, &cs.arg, &cs.op, cs.mask.as_ref(), &cs.value)?);
    }
    Ok(Rule { nr, action, conds, comment: r.comment.clone(), loc: cx.loc(&span) })
}

fn check_paths(cx: &Ctx<'_>, list: &[Spanned<String>]) -> Result<Vec<PathBuf>, PolicyError> {
    list.iter()
        .map(|p| {
            let s = p.get_ref();
            if s.is_empty() {
                Err(cx.err(&p.span(), "empty path", None))
            } else if s.contains('\0') {
                Err(cx.err(&p.span(), "a path cannot contain a NUL byte", None))
            } else {
                Ok(PathBuf::from(s))
            }
        })
        .collect()
}

fn check_view(cx: &Ctx<'_>, v: &RawView) -> Result<crate::view::ViewSpec, PolicyError> {
    use crate::view;
    let err = |span: &Range<usize>, e: view::ViewError| cx.err(span, e.message, Some(e.help));
    let mut out = view::ViewSpec { root_readonly: v.root_read_only, ..view::ViewSpec::default() };
    if let Some(r) = &v.root {
        let s = r.get_ref();
        if s.is_empty() || s.contains('\0') {
            return Err(cx.err(
                &r.span(),
                "the root must be a host directory",
                Some("write root = \"DIR\"".into()),
            ));
        }
        out.root = Some(PathBuf::from(s));
    }
    for b in &v.bind {
        out.binds.push(view::parse_bind(b.get_ref()).map_err(|e| err(&b.span(), e))?);
    }
    for t in &v.tmpfs {
        out.tmpfs.push(view::parse_tmpfs(t.get_ref()).map_err(|e| err(&t.span(), e))?);
    }
    if let Some(c) = &v.chdir {
        out.chdir = Some(view::check_view_path("chdir", c.get_ref(), true).map_err(|e| err(&c.span(), e))?);
    }
    Ok(out)
}

fn check_network(cx: &Ctx<'_>, n: &RawNetwork) -> Result<NetPolicy, PolicyError> {
    let rule_err = |span: &Range<usize>, e: net::RuleError| cx.err(span, e.message, e.help);
    let rules = |list: &[Spanned<String>]| -> Result<Vec<net::NetRule>, PolicyError> {
        list.iter()
            .map(|r| {
                let mut rule = net::parse_rule(r.get_ref()).map_err(|e| rule_err(&r.span(), e))?;
                rule.loc = cx.loc(&r.span());
                Ok(rule)
            })
            .collect()
    };
    let mut out =
        NetPolicy { connect: rules(&n.connect)?, listen: rules(&n.listen)?, ..NetPolicy::default() };
    for u in &n.unix {
        out.unix.push(net::parse_unix_path(u.get_ref()).map_err(|e| rule_err(&u.span(), e))?);
    }
    for a in &n.abstract_names {
        out.abstract_names.push(net::parse_abstract(a.get_ref()).map_err(|e| rule_err(&a.span(), e))?);
    }
    if let Some(r) = &n.resolver {
        out.resolver = Some(net::parse_resolver(r.get_ref()).map_err(|e| rule_err(&r.span(), e))?);
    }
    Ok(out)
}

/// `"512M"`, `"2GiB"`, `"4096"`, `1048576` → bytes.
pub fn parse_size(t: &str) -> Option<u64> {
    let t = t.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '_').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.replace('_', "").parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" | "k" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        "T" | "TB" | "TiB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// `"1500ms"`, `"10s"`, `"2m"`, `"1h"`, `"30"` → duration (a bare number is seconds).
pub fn parse_duration(t: &str) -> Option<Duration> {
    let t = t.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '_').unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.replace('_', "").parse().ok()?;
    Some(match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" | "min" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    })
}

fn check_size(cx: &Ctx<'_>, v: &Spanned<RawInt>) -> Result<u64, PolicyError> {
    let r = match v.get_ref() {
        RawInt::Int(i) => u64::try_from(*i).ok(),
        RawInt::Text(t) => parse_size(t),
    };
    r.ok_or_else(|| {
        cx.err(
            &v.span(),
            "not a size",
            Some("write bytes as an integer, or a string like \"512M\" or \"2G\"".into()),
        )
    })
}

fn check_count(cx: &Ctx<'_>, v: &Spanned<RawInt>) -> Result<u64, PolicyError> {
    match v.get_ref() {
        RawInt::Int(i) if *i > 0 => Ok(*i as u64),
        _ => Err(cx.err(&v.span(), "not a positive count", Some("write a positive integer".into()))),
    }
}

fn check_duration(cx: &Ctx<'_>, v: &Spanned<RawInt>) -> Result<Duration, PolicyError> {
    let r = match v.get_ref() {
        RawInt::Int(i) => u64::try_from(*i).ok().map(Duration::from_secs),
        RawInt::Text(t) => parse_duration(t),
    };
    r.ok_or_else(|| {
        cx.err(
            &v.span(),
            "not a duration",
            Some("write seconds as an integer, or a string like \"500ms\", \"10s\", \"2m\"".into()),
        )
    })
}

/// Allowed-but-suspicious things, shown by `cabinc policy check`.
fn warnings(p: &Policy) -> Vec<String> {
    let mut w = Vec::new();
    let explicit = |l: &[ListEntry]| -> Vec<u64> {
        l.iter()
            .filter_map(|e| match e.entry {
                Entry::Syscall(nr) => Some(nr),
                Entry::Group(_) => None,
            })
            .collect()
    };
    let (a, d, k) = (explicit(&p.allow), explicit(&p.deny), explicit(&p.kill));
    for nr in &a {
        if d.contains(nr) || k.contains(nr) {
            w.push(format!(
                "{} is in `allow` and in `{}`; `{}` wins",
                names::display(*nr),
                if k.contains(nr) { "kill" } else { "deny" },
                if k.contains(nr) { "kill" } else { "deny" },
            ));
        }
    }
    for (i, r) in p.rules.iter().enumerate() {
        if let Some(earlier) = p.rules[..i].iter().find(|q| q.nr == r.nr && q.conds.is_empty()) {
            w.push(format!(
                "line {}: this rule for {} never applies: the rule at line {} has no conditions and always does",
                r.loc.line,
                names::display(r.nr),
                earlier.loc.line
            ));
        }
    }
    for (what, rules) in [("connect", &p.network.connect), ("listen", &p.network.listen)] {
        for r in rules.iter() {
            if r.net.prefix == 0 {
                w.push(format!(
                    "line {}: [network] {what} `{r}` allows every {} address",
                    r.loc.line,
                    if r.net.addr.is_ipv4() { "IPv4" } else { "IPv6" }
                ));
            }
        }
    }
    w
}

#[cfg(test)]
mod tests {
    /// `[paths] exec`: "images" or "any" (the default), anything else
    /// refused with the choices; rendered back as written.
    #[test]
    fn paths_exec_images_or_any() {
        let p = |t: &str| super::parse("t.toml", t);
        assert!(!p("version = 1\n").expect("default").paths.exec_images_only);
        assert!(!p("version = 1\n[paths]\nexec = \"any\"\n").expect("any").paths.exec_images_only);
        let images = p("version = 1\n[paths]\nexec = \"images\"\n").expect("images");
        assert!(images.paths.exec_images_only);
        let text = crate::render::to_toml(&images, &[]);
        assert!(text.contains("exec = \"images\""), "{text}");
        assert!(p(&text).expect("rendered parses").paths.exec_images_only);
        let e = p("version = 1\n[paths]\nexec = \"plain\"\n").expect_err("unknown");
        let e = format!("{e:?}");
        assert!(e.contains("unknown exec setting `plain`") && e.contains("images"), "{e}");
    }
}
