//! Reshapes the schemas schemars generates into the form MCP clients handle
//! well: strict JSON Schema validators, the MCP Inspector's forms, and
//! clients that warn on every non-standard keyword.
//!
//! One pass over every tool's input and output schema, so a new tool cannot
//! forget a rule:
//! - definitions are inlined (enums become plain `enum` lists a form can
//!   offer as a dropdown); only a type that contains itself stays a `$ref`;
//! - an optional field is simply not required: no `null` in its type, no
//!   `default: null` (and no `default` at all, so a form sends nothing the
//!   user did not fill in; defaults are said in descriptions);
//! - only the formats JSON Schema defines are kept (`uint64`, `int32`, … are
//!   dropped; `minimum: 0` already says "unsigned");
//! - a bare `true` schema becomes `{}`;
//! - descriptions lose rustdoc link brackets and line breaks;
//! - required properties come first.
//!
//! Output answers are sent without `null` members (see [`strip_nulls`]), so
//! the output schemas agree with what is sent.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The formats JSON Schema 2020-12 defines.
const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// Keys whose value is one subschema.
const ONE_SCHEMA_KEYS: &[&str] = &[
    "items",
    "additionalProperties",
    "not",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "if",
    "then",
    "else",
];
/// Keys whose value is an array of subschemas.
const SCHEMA_LIST_KEYS: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems"];
/// Keys whose value is a map of name to subschema.
const SCHEMA_MAP_KEYS: &[&str] = &["properties", "patternProperties", "$defs"];

/// Reshapes one tool schema in place (see the module comment).
pub fn shape(schema: &mut Map<String, Value>) {
    let defs = match schema.remove("$defs") {
        Some(Value::Object(defs)) => defs,
        _ => Map::new(),
    };
    let recursive = recursive_defs(&defs);
    let mut kept = Map::new();
    for name in &recursive {
        if let Some(def) = defs.get(name) {
            let mut def = def.clone();
            shape_node(&mut def, &defs, &recursive, 0);
            kept.insert(name.clone(), def);
        }
    }
    let mut root = Value::Object(std::mem::take(schema));
    shape_node(&mut root, &defs, &recursive, 0);
    if let Value::Object(mut root) = root {
        if !kept.is_empty() {
            root.insert("$defs".into(), Value::Object(kept));
        }
        *schema = root;
    }
}

/// Names of definitions that reach themselves through `$ref`s: they cannot
/// be inlined and stay in `$defs`.
fn recursive_defs(defs: &Map<String, Value>) -> BTreeSet<String> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, def) in defs {
        let mut refs = BTreeSet::new();
        collect_refs(def, &mut refs);
        edges.insert(name.clone(), refs);
    }
    let mut out = BTreeSet::new();
    for start in defs.keys() {
        let mut stack: Vec<&String> = edges[start].iter().collect();
        let mut seen = BTreeSet::new();
        while let Some(n) = stack.pop() {
            if n == start {
                out.insert(start.clone());
                break;
            }
            if seen.insert(n.clone())
                && let Some(next) = edges.get(n)
            {
                stack.extend(next.iter());
            }
        }
    }
    out
}

fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(name) = m.get("$ref").and_then(Value::as_str).and_then(def_name) {
                out.insert(name.to_string());
            }
            m.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn def_name(reference: &str) -> Option<&str> {
    reference.strip_prefix("#/$defs/")
}

/// Reshapes one schema node; returns true when it allowed `null` (an
/// `Option` field), which its parent uses to drop it from `required`.
fn shape_node(
    node: &mut Value,
    defs: &Map<String, Value>,
    recursive: &BTreeSet<String>,
    depth: usize,
) -> bool {
    if let Value::Bool(true) = node {
        *node = Value::Object(Map::new());
        return false;
    }
    let Value::Object(m) = node else {
        return false;
    };
    // Inline a definition: the node's own keys (its field description) win.
    let reference = m
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(def_name)
        .map(str::to_string);
    if depth < 64
        && let Some(name) = reference
        && !recursive.contains(&name)
        && let Some(Value::Object(def)) = defs.get(&name)
    {
        m.remove("$ref");
        for (k, v) in def {
            if !m.contains_key(k) {
                m.insert(k.clone(), v.clone());
            }
        }
        return shape_node(node, defs, recursive, depth + 1);
    }
    let mut nullable = false;
    // `type: ["integer", "null"]` → `type: "integer"`.
    if let Some(Value::Array(types)) = m.get_mut("type") {
        let before = types.len();
        types.retain(|t| t != "null");
        nullable |= types.len() != before;
        if types.len() == 1 {
            let only = types.remove(0);
            m.insert("type".into(), only);
        }
    }
    if m.get("type").and_then(Value::as_str) == Some("null") {
        nullable = true;
    }
    if let Some(Value::Array(values)) = m.get_mut("enum") {
        let before = values.len();
        values.retain(|v| !v.is_null());
        nullable |= values.len() != before;
    }
    // `anyOf: [X, {type: null}]` → X merged into the node.
    for key in ["anyOf", "oneOf"] {
        let Some(Value::Array(branches)) = m.get_mut(key) else {
            continue;
        };
        let before = branches.len();
        branches.retain(|b| !is_null_schema(b));
        nullable |= branches.len() != before;
        if branches.len() == 1 {
            let Some(Value::Object(only)) = branches.pop() else {
                m.remove(key);
                continue;
            };
            m.remove(key);
            for (k, v) in only {
                if !m.contains_key(&k) {
                    m.insert(k, v);
                }
            }
            // The merged branch may itself be a `$ref` or carry nulls.
            return shape_node(node, defs, recursive, depth + 1) || nullable;
        }
    }
    enum_of_consts(m);
    m.remove("default");
    m.remove("title");
    if let Some(Value::String(format)) = m.get("format")
        && !STANDARD_FORMATS.contains(&format.as_str())
    {
        m.remove("format");
    }
    if let Some(Value::String(d)) = m.get_mut("description") {
        *d = plain_description(d);
    }
    for key in ONE_SCHEMA_KEYS {
        if let Some(sub) = m.get_mut(*key) {
            shape_node(sub, defs, recursive, depth + 1);
        }
    }
    for key in SCHEMA_LIST_KEYS {
        if let Some(Value::Array(subs)) = m.get_mut(*key) {
            for sub in subs {
                shape_node(sub, defs, recursive, depth + 1);
            }
        }
    }
    let mut optional = BTreeSet::new();
    for key in SCHEMA_MAP_KEYS {
        if let Some(Value::Object(subs)) = m.get_mut(*key) {
            for (name, sub) in subs.iter_mut() {
                if shape_node(sub, defs, recursive, depth + 1) && *key == "properties" {
                    optional.insert(name.clone());
                }
            }
        }
    }
    // An `Option` field is never required: answers are sent without nulls.
    let mut required: Vec<String> = match m.get("required") {
        Some(Value::Array(r)) => r
            .iter()
            .filter_map(Value::as_str)
            .filter(|n| !optional.contains(*n))
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    required.dedup();
    if m.contains_key("required") {
        if required.is_empty() {
            m.remove("required");
        } else {
            m.insert(
                "required".into(),
                Value::Array(required.iter().cloned().map(Value::String).collect()),
            );
        }
    }
    // Required properties first, each group in declaration order.
    if let Some(Value::Object(props)) = m.get_mut("properties") {
        let old = std::mem::take(props);
        let (first, rest): (Vec<_>, Vec<_>) =
            old.into_iter().partition(|(k, _)| required.contains(k));
        let mut first = first;
        first.sort_by_key(|(k, _)| required.iter().position(|r| r == k));
        props.extend(first);
        props.extend(rest);
    }
    nullable
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
        || v.get("const").is_some_and(Value::is_null)
}

/// `oneOf: [{const: "a", description: …}, …]` (a Rust enum of unit
/// variants) → `enum: ["a", …]`, the variants' descriptions folded into the
/// node's description: forms offer an `enum` as a dropdown.
fn enum_of_consts(m: &mut Map<String, Value>) {
    for key in ["oneOf", "anyOf"] {
        let Some(Value::Array(branches)) = m.get(key) else {
            continue;
        };
        let all_string_consts = !branches.is_empty()
            && branches
                .iter()
                .all(|b| b.get("const").is_some_and(Value::is_string));
        if !all_string_consts {
            continue;
        }
        let mut values = Vec::new();
        let mut explained = Vec::new();
        for b in branches {
            let value = b["const"].as_str().unwrap_or_default().to_string();
            if let Some(d) = b.get("description").and_then(Value::as_str) {
                explained.push(format!("`{value}`: {}", plain_description(d)));
            }
            values.push(Value::String(value));
        }
        m.remove(key);
        m.insert("type".into(), Value::String("string".into()));
        m.insert("enum".into(), Value::Array(values));
        if !m.contains_key("description") && !explained.is_empty() {
            m.insert(
                "description".into(),
                Value::String(explained.join("; ").replace(".;", ";")),
            );
        }
        return;
    }
}

/// A doc comment as plain words: no rustdoc link brackets, one line.
pub fn plain_description(d: &str) -> String {
    let mut out = d.replace("[`", "`").replace("`]", "`");
    out = out.split('\n').map(str::trim).collect::<Vec<_>>().join(" ");
    out.trim().to_string()
}

/// Removes every object member whose value is `null`, at every depth: an
/// absent optional field is said by its absence, as the output schemas say.
pub fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inlines_enums_drops_nulls_and_orders_required_first() {
        let mut schema = json!({
            "$defs": {
                "Kind": {"oneOf": [
                    {"const": "count", "type": "string", "description": "Hits."},
                    {"const": "histogram", "type": "string"}
                ]},
                "Node": {"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}}}
            },
            "type": "object",
            "properties": {
                "engine": {"anyOf": [{"$ref": "#/$defs/Kind"}, {"type": "null"}], "description": "See [`Kind`]."},
                "limit": {"type": ["integer", "null"], "format": "uint32", "minimum": 0, "default": null},
                "any": true,
                "node": {"$ref": "#/$defs/Node"},
                "pid": {"type": "integer", "format": "int32"}
            },
            "required": ["pid", "limit"]
        });
        let Value::Object(m) = &mut schema else {
            unreachable!()
        };
        shape(m);
        let props = &schema["properties"];
        assert_eq!(
            props["engine"],
            json!({"type": "string", "enum": ["count", "histogram"], "description": "See `Kind`."})
        );
        assert_eq!(props["limit"], json!({"type": "integer", "minimum": 0}));
        assert_eq!(props["any"], json!({}));
        assert_eq!(props["pid"], json!({"type": "integer"}));
        assert_eq!(props["node"], json!({"$ref": "#/$defs/Node"}));
        assert_eq!(schema["required"], json!(["pid"]));
        let order: Vec<&String> = props.as_object().map(|p| p.keys().collect()).unwrap();
        assert_eq!(order[0], "pid");
        assert_eq!(
            schema["$defs"]["Node"]["properties"]["next"],
            json!({"$ref": "#/$defs/Node"})
        );
    }
}
