//! A small JSON Schema validator for the subset of draft 2020-12 that
//! `docs/trace-schema.json` uses, so that the tests which check trace and
//! audit records against the schema do not pull a general validator (and its
//! URL, IDNA and regex-engine dependencies) into every cold build.
//!
//! Supported keywords: `type` (a name or a list), `const`, `enum`, `oneOf`,
//! `$ref` to a JSON pointer inside the same document (`#/$defs/NAME`),
//! `properties`, `required`, `additionalProperties` (`false` or a schema),
//! `maxProperties`, `items` (one schema), `minItems`, `maxItems`, `minimum`,
//! `maxLength` (in characters) and `pattern` (the `regex` crate's syntax,
//! searched as ECMA-262 does). `$schema`, `$id`, `$defs`, `title` and
//! `description` are read as annotations. Any other keyword makes
//! [`Validator::new`] fail: a constraint added to the schema that this
//! validator does not know is an error, never a constraint silently skipped.

use std::fmt;
use std::path::Path;

use regex::Regex;
use serde_json::{Map, Value};

/// Keywords that carry no constraint.
const ANNOTATIONS: [&str; 5] = ["$schema", "$id", "$defs", "title", "description"];

/// Why a schema cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The schema file could not be read or is not JSON.
    #[error("reading the schema {path}: {why}")]
    Read { path: String, why: String },
    /// A keyword this validator does not implement.
    #[error("unsupported JSON Schema keyword `{keyword}` at {at}")]
    Unsupported { keyword: String, at: String },
    /// A keyword whose value has the wrong shape.
    #[error("malformed `{keyword}` at {at}: {why}")]
    Malformed { keyword: String, at: String, why: String },
}

/// One way an instance fails the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// JSON pointer of the failing value in the instance (`""` for the root).
    pub instance_path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.instance_path.is_empty() { "/" } else { &self.instance_path };
        write!(f, "{at}: {}", self.message)
    }
}

/// A checked schema, ready to validate instances.
#[derive(Debug)]
pub struct Validator {
    root: Value,
    /// Every `pattern` in the schema, compiled once.
    patterns: Vec<(String, Regex)>,
}

impl Validator {
    /// Checks that `schema` uses only the supported keywords, that every
    /// `$ref` resolves and that every `pattern` compiles.
    pub fn new(schema: &Value) -> Result<Self, SchemaError> {
        let mut patterns = Vec::new();
        check_schema(schema, schema, "#", &mut patterns)?;
        Ok(Self { root: schema.clone(), patterns })
    }

    /// Reads and checks the schema file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, SchemaError> {
        let read = |why: String| SchemaError::Read { path: path.display().to_string(), why };
        let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| read(e.to_string()))?;
        Self::new(&value)
    }

    /// Whether `instance` satisfies the schema.
    pub fn is_valid(&self, instance: &Value) -> bool {
        self.errors(instance).is_empty()
    }

    /// `Err` with the first way `instance` fails the schema.
    pub fn validate(&self, instance: &Value) -> Result<(), ValidationError> {
        self.errors(instance).into_iter().next().map_or(Ok(()), Err)
    }

    /// Every way `instance` fails the schema (empty when it is valid).
    pub fn errors(&self, instance: &Value) -> Vec<ValidationError> {
        let mut out = Vec::new();
        self.check(&self.root, instance, "", &mut out);
        out
    }

    fn check(&self, schema: &Value, v: &Value, at: &str, out: &mut Vec<ValidationError>) {
        let Some(s) = schema.as_object() else {
            if schema == &Value::Bool(false) {
                out.push(err(at, "no value is allowed here".into()));
            }
            return;
        };
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            // Resolved when the validator was built.
            let target = resolve(&self.root, r).unwrap_or(&Value::Bool(false));
            self.check(target, v, at, out);
        }
        if let Some(t) = s.get("type") {
            let names: Vec<&str> = match t {
                Value::String(n) => vec![n.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !names.iter().any(|n| has_type(v, n)) {
                out.push(err(at, format!("{v} is not of type {}", names.join(" or "))));
            }
        }
        if let Some(c) = s.get("const") {
            if !json_eq(c, v) {
                out.push(err(at, format!("{v} is not {c}")));
            }
        }
        if let Some(Value::Array(options)) = s.get("enum") {
            if !options.iter().any(|o| json_eq(o, v)) {
                out.push(err(at, format!("{v} is not one of {}", Value::Array(options.clone()))));
            }
        }
        if let Some(Value::Array(alternatives)) = s.get("oneOf") {
            self.check_one_of(alternatives, v, at, out);
        }
        match v {
            Value::Object(o) => self.check_object(s, o, at, out),
            Value::Array(items) => self.check_array(s, items, at, out),
            Value::String(text) => self.check_string(s, text, at, out),
            Value::Number(n) => {
                if let Some(Value::Number(min)) = s.get("minimum") {
                    if below(n, min) {
                        out.push(err(at, format!("{v} is less than the minimum {min}")));
                    }
                }
            }
            _ => {}
        }
    }

    fn check_one_of(&self, alternatives: &[Value], v: &Value, at: &str, out: &mut Vec<ValidationError>) {
        let results: Vec<Vec<ValidationError>> = alternatives
            .iter()
            .map(|a| {
                let mut e = Vec::new();
                self.check(a, v, at, &mut e);
                e
            })
            .collect();
        let passing = results.iter().filter(|e| e.is_empty()).count();
        match passing {
            1 => {}
            0 => {
                // Say why the closest alternative failed: that is the one
                // the record was most likely meant to be.
                let closest = results.iter().min_by_key(|e| e.len()).cloned().unwrap_or_default();
                out.push(err(
                    at,
                    format!("{v} matches none of the {} oneOf alternatives", alternatives.len()),
                ));
                out.extend(closest);
            }
            n => out.push(err(at, format!("{v} matches {n} oneOf alternatives, not exactly one"))),
        }
    }

    fn check_object(
        &self,
        s: &Map<String, Value>,
        o: &Map<String, Value>,
        at: &str,
        out: &mut Vec<ValidationError>,
    ) {
        let props = s.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(required)) = s.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !o.contains_key(name) {
                    out.push(err(at, format!("the required property {name:?} is missing")));
                }
            }
        }
        if let Some(max) = s.get("maxProperties").and_then(Value::as_u64) {
            if o.len() as u64 > max {
                out.push(err(at, format!("{} properties, more than the maximum {max}", o.len())));
            }
        }
        for (name, value) in o {
            let here = format!("{at}/{}", escape_pointer(name));
            match props.and_then(|p| p.get(name)) {
                Some(sub) => self.check(sub, value, &here, out),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        out.push(err(at, format!("the additional property {name:?} is not allowed")))
                    }
                    Some(sub) => self.check(sub, value, &here, out),
                    None => {}
                },
            }
        }
    }

    fn check_array(&self, s: &Map<String, Value>, items: &[Value], at: &str, out: &mut Vec<ValidationError>) {
        if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
            if (items.len() as u64) < min {
                out.push(err(at, format!("{} items, fewer than the minimum {min}", items.len())));
            }
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
            if items.len() as u64 > max {
                out.push(err(at, format!("{} items, more than the maximum {max}", items.len())));
            }
        }
        if let Some(sub) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.check(sub, item, &format!("{at}/{i}"), out);
            }
        }
    }

    fn check_string(&self, s: &Map<String, Value>, text: &str, at: &str, out: &mut Vec<ValidationError>) {
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
            let len = text.chars().count() as u64;
            if len > max {
                out.push(err(at, format!("{len} characters, longer than the maximum {max}")));
            }
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            // Compiled when the validator was built.
            let matched =
                self.patterns.iter().find(|(src, _)| src == p).is_some_and(|(_, re)| re.is_match(text));
            if !matched {
                out.push(err(at, format!("{:?} does not match the pattern {p:?}", text)));
            }
        }
    }
}

/// `n < min`, exact for integers.
fn below(n: &serde_json::Number, min: &serde_json::Number) -> bool {
    let int = |x: &serde_json::Number| x.as_i64().map(i128::from).or_else(|| x.as_u64().map(i128::from));
    match (int(n), int(min)) {
        (Some(a), Some(b)) => a < b,
        _ => n.as_f64().unwrap_or(f64::NAN) < min.as_f64().unwrap_or(f64::NAN),
    }
}

fn err(at: &str, message: String) -> ValidationError {
    ValidationError { instance_path: at.to_string(), message }
}

/// Walks the schema at `schema` (JSON pointer `at`): every keyword known,
/// every `$ref` resolving, every `pattern` compiling (into `patterns`).
fn check_schema(
    root: &Value,
    schema: &Value,
    at: &str,
    patterns: &mut Vec<(String, Regex)>,
) -> Result<(), SchemaError> {
    let s = match schema {
        Value::Bool(_) => return Ok(()),
        Value::Object(s) => s,
        _ => return Err(malformed("(schema)", at, "a schema is an object or a boolean")),
    };
    for (keyword, value) in s {
        let here = format!("{at}/{}", escape_pointer(keyword));
        let bad = |why: &str| malformed(keyword, at, why);
        match keyword.as_str() {
            "$defs" | "properties" => {
                let map = value.as_object().ok_or_else(|| bad("not an object"))?;
                for (name, sub) in map {
                    check_schema(root, sub, &format!("{here}/{}", escape_pointer(name)), patterns)?;
                }
            }
            "additionalProperties" | "items" => check_schema(root, value, &here, patterns)?,
            "oneOf" => {
                let list =
                    value.as_array().filter(|l| !l.is_empty()).ok_or_else(|| bad("not a non-empty array"))?;
                for (i, sub) in list.iter().enumerate() {
                    check_schema(root, sub, &format!("{here}/{i}"), patterns)?;
                }
            }
            "$ref" => {
                let r = value.as_str().ok_or_else(|| bad("not a string"))?;
                if resolve(root, r).is_none() {
                    return Err(bad(&format!("{r:?} does not resolve to a schema in this document")));
                }
            }
            "type" => {
                let names: Vec<&Value> = match value {
                    Value::Array(a) => a.iter().collect(),
                    one => vec![one],
                };
                for n in names {
                    let known = n.as_str().is_some_and(|n| {
                        ["null", "boolean", "object", "array", "number", "integer", "string"].contains(&n)
                    });
                    if !known {
                        return Err(bad(&format!("{n} is not a JSON Schema type")));
                    }
                }
            }
            "enum" => {
                value.as_array().ok_or_else(|| bad("not an array"))?;
            }
            "required" => {
                let ok = value.as_array().is_some_and(|a| a.iter().all(Value::is_string));
                if !ok {
                    return Err(bad("not an array of strings"));
                }
            }
            "maxProperties" | "minItems" | "maxItems" | "maxLength" => {
                value.as_u64().ok_or_else(|| bad("not a non-negative integer"))?;
            }
            "minimum" => {
                value.as_f64().ok_or_else(|| bad("not a number"))?;
            }
            "pattern" => {
                let p = value.as_str().ok_or_else(|| bad("not a string"))?;
                let re = Regex::new(p).map_err(|e| bad(&e.to_string()))?;
                patterns.push((p.to_string(), re));
            }
            "const" => {}
            k if ANNOTATIONS.contains(&k) => {}
            k => return Err(SchemaError::Unsupported { keyword: k.to_string(), at: at.to_string() }),
        }
    }
    Ok(())
}

fn malformed(keyword: &str, at: &str, why: &str) -> SchemaError {
    SchemaError::Malformed { keyword: keyword.to_string(), at: at.to_string(), why: why.to_string() }
}

/// The schema a `$ref` names: `#` or `#/a/b` (a JSON pointer into `root`).
fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    let target = root.pointer(pointer)?;
    (target.is_object() || target.is_boolean()).then_some(target)
}

/// Escapes a property name for a JSON pointer (RFC 6901).
fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

fn has_type(v: &Value, name: &str) -> bool {
    match name {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "number" => v.is_number(),
        "string" => v.is_string(),
        // 2020-12: a number with a zero fractional part is an integer.
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

/// JSON equality, numbers compared by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(x), Some(y), _, _) => x == y,
            (_, _, Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}

/// The trace and audit record schema, `docs/trace-schema.json`, checked.
pub fn trace_schema() -> Validator {
    let path = crate::workspace_root().join("docs/trace-schema.json");
    Validator::from_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn v(schema: Value) -> Validator {
        Validator::new(&schema).expect("a supported schema")
    }

    #[test]
    fn each_keyword_accepts_and_rejects() {
        let cases: Vec<(Value, Vec<Value>, Vec<Value>)> = vec![
            (
                json!({"type": "integer"}),
                vec![json!(3), json!(-1), json!(2.0)],
                vec![json!(2.5), json!("3"), json!(null)],
            ),
            (json!({"type": ["string", "null"]}), vec![json!("x"), json!(null)], vec![json!(1), json!([])]),
            (json!({"type": "object"}), vec![json!({})], vec![json!([]), json!("{}")]),
            (json!({"type": "array"}), vec![json!([])], vec![json!({})]),
            (json!({"type": "boolean"}), vec![json!(true)], vec![json!(0)]),
            (json!({"type": "number"}), vec![json!(1.5), json!(1)], vec![json!("1")]),
            (json!({"const": 1}), vec![json!(1), json!(1.0)], vec![json!(2), json!("1"), json!(true)]),
            (json!({"const": true}), vec![json!(true)], vec![json!(1)]),
            (json!({"enum": ["a", null]}), vec![json!("a"), json!(null)], vec![json!("b"), json!(0)]),
            (
                json!({"minimum": 1}),
                vec![json!(1), json!(u64::MAX), json!("0")],
                vec![json!(0), json!(-5), json!(0.5)],
            ),
            (json!({"maxLength": 2}), vec![json!("ab"), json!("éé"), json!(123)], vec![json!("abc")]),
            (
                json!({"pattern": "^0x[0-9a-f]+$"}),
                vec![json!("0x1f"), json!(5)],
                vec![json!("0x"), json!("1f")],
            ),
            // Searched, not anchored, as ECMA-262 does.
            (json!({"pattern": "b"}), vec![json!("abc")], vec![json!("ac")]),
            (
                json!({"minItems": 1, "maxItems": 2}),
                vec![json!([1]), json!([1, 2])],
                vec![json!([]), json!([1, 2, 3])],
            ),
            (json!({"items": {"type": "string"}}), vec![json!([]), json!(["a"])], vec![json!(["a", 1])]),
            (json!({"required": ["a"]}), vec![json!({"a": 1}), json!([])], vec![json!({"b": 1})]),
            (json!({"maxProperties": 1}), vec![json!({"a": 1})], vec![json!({"a": 1, "b": 2})]),
            (
                json!({"properties": {"a": {"type": "string"}}, "additionalProperties": false}),
                vec![json!({}), json!({"a": "x"})],
                vec![json!({"a": 1}), json!({"b": "x"})],
            ),
            (
                json!({"additionalProperties": {"type": "integer"}}),
                vec![json!({"a": 1, "b": 2})],
                vec![json!({"a": 1, "b": "2"})],
            ),
            (
                json!({"oneOf": [{"type": "string"}, {"type": "integer"}]}),
                vec![json!("a"), json!(1)],
                vec![json!(null), json!([])],
            ),
            // Both alternatives match 1: oneOf wants exactly one.
            (
                json!({"oneOf": [{"type": "integer"}, {"minimum": 0}]}),
                vec![json!(-1), json!("x")],
                vec![json!(1)],
            ),
            (
                json!({"$defs": {"hex": {"type": "string", "pattern": "^0x"}}, "items": {"$ref": "#/$defs/hex"}}),
                vec![json!(["0x1"])],
                vec![json!(["1"]), json!([1])],
            ),
            // `$ref` next to other keywords: both apply.
            (
                json!({"$defs": {"s": {"type": "string"}}, "$ref": "#/$defs/s", "maxLength": 1}),
                vec![json!("a")],
                vec![json!("ab"), json!(1)],
            ),
        ];
        for (schema, good, bad) in cases {
            let val = v(schema.clone());
            for g in good {
                assert_eq!(val.errors(&g), vec![], "{schema} must accept {g}");
            }
            for b in bad {
                assert!(!val.is_valid(&b), "{schema} must reject {b}");
            }
        }
    }

    #[test]
    fn unknown_or_malformed_keywords_are_refused() {
        for schema in [
            json!({"minLength": 1}),
            json!({"properties": {"a": {"format": "email"}}}),
            json!({"anyOf": [{}]}),
            json!({"patternProperties": {"^a": {}}}),
            json!({"$defs": {"x": {"exclusiveMinimum": 0}}}),
        ] {
            assert!(
                matches!(Validator::new(&schema), Err(SchemaError::Unsupported { .. })),
                "{schema} must be refused"
            );
        }
        for schema in [
            json!({"$ref": "#/$defs/missing"}),
            json!({"$ref": "https://example.invalid/s.json"}),
            json!({"pattern": "("}),
            json!({"type": "text"}),
            json!({"required": "a"}),
            json!({"maxLength": -1}),
            json!({"oneOf": []}),
            json!({"properties": []}),
        ] {
            assert!(
                matches!(Validator::new(&schema), Err(SchemaError::Malformed { .. })),
                "{schema} must be refused"
            );
        }
    }

    #[test]
    fn errors_name_the_failing_value() {
        let val = v(json!({"properties": {"a": {"items": {"type": "integer"}}}}));
        let errors = val.errors(&json!({"a": [1, "x"]}));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].instance_path, "/a/1");
        assert_eq!(errors[0].to_string(), "/a/1: \"x\" is not of type integer");
    }

    fn good_records() -> Vec<Value> {
        vec![
            json!({"type": "start", "schema": 1, "version": "0.1.0", "image": "a.cabin", "backend": "kvm",
                   "args": ["a", "b"], "unix_time_ns": 1, "measurement": null, "policy_digest": null,
                   "policy_mode": null}),
            json!({"type": "start", "schema": 1, "version": "0.1.0", "image": "a.cabin", "backend": "process",
                   "args": [], "unix_time_ns": 0, "measurement": "ab".repeat(48),
                   "policy_digest": format!("sha256:{}", "0".repeat(64)), "policy_mode": "complain"}),
            json!({"type": "syscall", "seq": 1, "tid": 1, "t_ns": 5, "nr": 1, "name": "write",
                   "args": ["0x1", "0x0", "0xffffffffffffffff", "0x0", "0x0", "0x0"], "ret": "0x5",
                   "served": "forwarded", "dur_ns": 3, "site": "0x401000", "path": "a\\\\b\\x01c...(+3 bytes)"}),
            json!({"type": "syscall", "seq": 2, "tid": 1, "t_ns": 5, "nr": 2, "name": "open",
                   "args": ["0x0", "0x0", "0x0", "0x0", "0x0", "0x0"], "served": "denied", "dur_ns": 0,
                   "errno": "EACCES", "rule": "[paths] /etc: not allowed", "complain": true}),
            json!({"type": "limit", "t_ns": 1, "limit": "memory", "value": "0x10", "max": "0x8",
                   "action": "stopped"}),
            json!({"type": "violation", "t_ns": 1, "message": "bad ring"}),
            json!({"type": "audit-truncated", "t_ns": 1, "cap_bytes": 4096, "message": "cap reached"}),
            json!({"type": "exit", "t_ns": 9, "exit_code": -1, "reason": "exited", "audit_dropped": 0,
                   "summary": {"total": 1, "local": 0, "forwarded": 1, "trapped": 0, "denied": 0, "killed": 0,
                               "complained": 0, "errors": 0, "limits": 0, "violations": 0,
                               "per_syscall": {"write": 1}}}),
        ]
    }

    #[test]
    fn the_trace_schema_accepts_each_kind_of_record() {
        let schema = trace_schema();
        for r in good_records() {
            assert_eq!(schema.errors(&r), vec![], "{r}");
        }
    }

    #[test]
    fn the_trace_schema_rejects_each_kind_of_mistake() {
        let schema = trace_schema();
        let records = good_records();
        // (record index, JSON pointer, replacement or None to remove).
        let mistakes: Vec<(usize, &str, Option<Value>)> = vec![
            (0, "/type", Some(json!("begin"))),
            (0, "/schema", Some(json!(2))),
            (0, "/backend", Some(json!("qemu"))),
            (0, "/args", Some(json!(["a", 1]))),
            (0, "/unix_time_ns", Some(json!(-1))),
            (0, "/unix_time_ns", Some(json!(1.5))),
            (0, "/image", None),
            (0, "/extra", Some(json!(1))),
            (1, "/measurement", Some(json!("ab"))),
            (1, "/policy_digest", Some(json!("sha1:00"))),
            (1, "/policy_mode", Some(json!("audit"))),
            (2, "/seq", Some(json!(0))),
            (2, "/name", Some(json!("Write"))),
            (2, "/args", Some(json!(["0x1"]))),
            (2, "/args", Some(json!(["0x1", "0x0", "0x0", "0x0", "0x0", "0x0", "0x0"]))),
            (2, "/args/0", Some(json!("0x01"))),
            (2, "/args/0", Some(json!("0x10000000000000000"))),
            (2, "/ret", Some(json!("0xABC"))),
            (2, "/served", Some(json!("served"))),
            (2, "/path", Some(json!("a\u{1}b"))),
            (2, "/path", Some(json!("a\\b"))),
            (2, "/path", Some(json!("x".repeat(1101)))),
            (3, "/complain", Some(json!(false))),
            (4, "/limit", Some(json!("disk"))),
            (4, "/value", Some(json!(16))),
            (5, "/message", None),
            (6, "/cap_bytes", Some(json!(-4))),
            (7, "/reason", Some(json!("crashed"))),
            (7, "/exit_code", Some(json!("0"))),
            (7, "/summary/total", None),
            (7, "/summary/extra", Some(json!(0))),
            (7, "/summary/per_syscall/write", Some(json!(-1))),
            (
                7,
                "/summary/per_syscall",
                Some(Value::Object((0..514).map(|i| (format!("s{i}"), json!(1))).collect())),
            ),
        ];
        for (index, pointer, replacement) in mistakes {
            let mut r = records[index].clone();
            let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
            let container = r.pointer_mut(parent).expect("the parent exists");
            match (container, replacement) {
                (Value::Object(o), Some(x)) => {
                    o.insert(key.to_string(), x);
                }
                (Value::Object(o), None) => {
                    o.remove(key).expect("the field exists");
                }
                (Value::Array(a), Some(x)) => a[key.parse::<usize>().expect("an index")] = x,
                _ => panic!("bad case {pointer}"),
            }
            assert!(!schema.is_valid(&r), "the schema must reject {pointer} in {r}");
        }
        assert!(!schema.is_valid(&json!({"type": "syscalls"})));
        assert!(!schema.is_valid(&json!([])));
    }
}
