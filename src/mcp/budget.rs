//! Keeps every answer within a byte budget, structured content and text
//! alike, and says what was cut: a client that forwards `structuredContent`
//! to its model must not flood the model's context.
//!
//! The structured answer is cut where it is largest: long lists keep their
//! first elements, a value's children are dropped (the value keeps its
//! one-line summary and `truncated: true`), long strings are shortened. Every
//! cut is listed in the answer's `cut` member with its JSON path, and the text
//! names the same cuts. Long type and function names (Rust generics reach
//! 18,000 characters) are shortened in every answer, whatever its size.

use serde_json::{Map, Value, json};

use crate::value::shorten_type_name;

/// Bytes of one answer unless the call asks otherwise.
pub const DEFAULT_MAX_BYTES: usize = 32 * 1024;
/// The smallest budget honoured: enough for an answer's skeleton and its cut notes.
pub const MIN_MAX_BYTES: usize = 4 * 1024;
/// The largest budget honoured.
pub const MAX_MAX_BYTES: usize = 1024 * 1024;
/// Bytes a paged answer keeps free for its own fields and the cut notes.
pub const PAGE_RESERVE: usize = 4096;
/// Bytes kept free for the `cut` member itself.
const CUT_NOTE_RESERVE: usize = 1536;
/// Cuts listed by path; more are counted.
const MAX_LISTED_CUTS: usize = 8;
/// Keys whose string values are names that may carry long generic arguments.
const NAME_KEYS: &[&str] = &["type", "function", "name", "type_name"];

/// The budget a call asked for, brought within the bounds.
pub fn budget(asked: Option<u32>) -> usize {
    asked
        .map(|b| (b as usize).clamp(MIN_MAX_BYTES, MAX_MAX_BYTES))
        .unwrap_or(DEFAULT_MAX_BYTES)
}

/// What fitting an answer cut.
#[derive(Debug, Default)]
pub struct Cuts {
    /// `path: what` for each cut.
    pub notes: Vec<String>,
    /// Names whose generic arguments were elided.
    pub names_shortened: usize,
    /// Size of the structured answer before cutting.
    pub original_bytes: usize,
}

impl Cuts {
    /// True when nothing was cut or shortened.
    pub fn is_empty(&self) -> bool {
        self.notes.is_empty() && self.names_shortened == 0
    }

    /// One paragraph for the text answer.
    pub fn text(&self, max_bytes: usize, hint: &str) -> String {
        let mut s = String::new();
        if !self.notes.is_empty() {
            s.push_str(&format!(
                "[answer cut to fit max_bytes={max_bytes} (was {} bytes): {}",
                self.original_bytes,
                self.notes
                    .iter()
                    .take(MAX_LISTED_CUTS)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
            if self.notes.len() > MAX_LISTED_CUTS {
                s.push_str(&format!(
                    "; and {} more cut(s)",
                    self.notes.len() - MAX_LISTED_CUTS
                ));
            }
            s.push_str(&format!(". {hint}]"));
        }
        if self.names_shortened > 0 {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&format!(
                "[{} long type or function name(s) shortened: generic arguments elided as <…>]",
                self.names_shortened
            ));
        }
        s
    }

    /// The `cut` member added to a structured answer.
    pub fn json(&self, max_bytes: usize, hint: &str) -> Value {
        let mut m = Map::new();
        m.insert("max_bytes".into(), json!(max_bytes));
        if !self.notes.is_empty() {
            m.insert("original_bytes".into(), json!(self.original_bytes));
            let listed: Vec<&String> = self.notes.iter().take(MAX_LISTED_CUTS).collect();
            m.insert("cuts".into(), json!(listed));
            if self.notes.len() > MAX_LISTED_CUTS {
                m.insert(
                    "more_cuts".into(),
                    json!(self.notes.len() - MAX_LISTED_CUTS),
                );
            }
            m.insert("how_to_see_more".into(), json!(hint));
        }
        if self.names_shortened > 0 {
            m.insert("names_shortened".into(), json!(self.names_shortened));
        }
        Value::Object(m)
    }
}

/// The schema of the `cut` member, added to every output schema.
pub fn cut_schema() -> Value {
    json!({
        "type": "object",
        "description": "Present when the answer was cut to fit its byte budget or long names were shortened: what was cut and how to see more.",
        "properties": {
            "max_bytes": {"type": "integer", "minimum": 0, "description": "The budget the answer was fitted to."},
            "original_bytes": {"type": "integer", "minimum": 0, "description": "Size of the structured answer before cutting."},
            "cuts": {"type": "array", "items": {"type": "string"}, "description": "Each cut: the JSON path and what was dropped."},
            "more_cuts": {"type": "integer", "minimum": 0, "description": "Cuts not listed."},
            "how_to_see_more": {"type": "string", "description": "The call that shows what was cut."},
            "names_shortened": {"type": "integer", "minimum": 0, "description": "Type or function names whose generic arguments were elided as <…>."}
        },
        "required": ["max_bytes"]
    })
}

/// Shortens long names, then cuts `answer` until its compact JSON is at
/// most `max_bytes` (less a reserve for the cut notes).
pub fn fit(answer: &mut Value, max_bytes: usize) -> Cuts {
    let mut cuts = Cuts {
        names_shortened: shorten_names(answer, None),
        original_bytes: size_of(answer),
        ..Cuts::default()
    };
    let target = max_bytes.saturating_sub(CUT_NOTE_RESERVE).max(512);
    // Each round removes at least one element or a string's tail, so the
    // loop ends; the bound is a guard against a pathological shape.
    for _ in 0..10_000 {
        let size = size_of(answer);
        if size <= target {
            break;
        }
        let excess = size - target;
        let mut best: Option<(usize, Vec<PathStep>)> = None;
        largest_cuttable(answer, &mut Vec::new(), &mut best);
        let Some((_, path)) = best else {
            break;
        };
        match cut_at(answer, &path, excess) {
            Some(note) => cuts.notes.push(note),
            None => break,
        }
    }
    cuts
}

#[derive(Clone, Debug)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn path_text(path: &[PathStep]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            PathStep::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            PathStep::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    if s.is_empty() { "(answer)".into() } else { s }
}

/// Compact JSON size of a value.
fn size_of(v: &Value) -> usize {
    match v {
        Value::Object(m) => {
            2 + m.len().saturating_sub(1)
                + m.iter()
                    .map(|(k, v)| k.len() + 3 + size_of(v))
                    .sum::<usize>()
        }
        Value::Array(a) => 2 + a.len().saturating_sub(1) + a.iter().map(size_of).sum::<usize>(),
        other => serde_json::to_string(other).map(|s| s.len()).unwrap_or(0),
    }
}

/// Finds the largest thing that can be cut: an array of two or more
/// elements, a value's `children`, or a long string.
fn largest_cuttable(
    v: &Value,
    path: &mut Vec<PathStep>,
    best: &mut Option<(usize, Vec<PathStep>)>,
) {
    let size = size_of(v);
    if best.as_ref().is_some_and(|(b, _)| *b >= size * 4) {
        // Nothing inside can weigh more than the best found so far.
        return;
    }
    let cuttable = match v {
        Value::Array(a) => {
            a.len() >= 2 || matches!(path.last(), Some(PathStep::Key(k)) if k == "children")
        }
        Value::String(s) => s.len() > 256,
        _ => false,
    };
    // A value's children weigh four times: detail deep inside a value is
    // cut before whole frames or results are.
    let weight = if matches!(path.last(), Some(PathStep::Key(k)) if k == "children") {
        size * 4
    } else {
        size
    };
    if cuttable && best.as_ref().is_none_or(|(b, _)| weight > *b) {
        *best = Some((weight, path.clone()));
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                path.push(PathStep::Key(k.clone()));
                largest_cuttable(child, path, best);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                path.push(PathStep::Index(i));
                largest_cuttable(child, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Cuts the array or string at `path` by about `excess` bytes; returns the note.
fn cut_at(root: &mut Value, path: &[PathStep], excess: usize) -> Option<String> {
    let (last, parent_path) = path.split_last()?;
    let mut parent = &mut *root;
    for step in parent_path {
        parent = match step {
            PathStep::Key(k) => parent.get_mut(k.as_str())?,
            PathStep::Index(i) => parent.get_mut(*i)?,
        };
    }
    let where_ = path_text(path);
    let is_children = matches!(last, PathStep::Key(k) if k == "children");
    let target = match last {
        PathStep::Key(k) => parent.get_mut(k.as_str())?,
        PathStep::Index(i) => parent.get_mut(*i)?,
    };
    match target {
        Value::Array(a) => {
            let total = a.len();
            let size = size_of(&Value::Array(a.clone()));
            let budget = size.saturating_sub(excess);
            let mut used = 2;
            let mut keep = 0;
            for e in a.iter() {
                let s = size_of(e) + 1;
                if used + s > budget {
                    break;
                }
                used += s;
                keep += 1;
            }
            // A list keeps at least one element unless it is a value's children.
            if !is_children {
                keep = keep.max(1);
            }
            if keep >= total {
                keep = total.saturating_sub(1);
            }
            a.truncate(keep);
            if is_children && let Value::Object(value) = parent {
                value.insert("truncated".into(), Value::Bool(true));
                if keep == 0 {
                    value.remove("children");
                }
            }
            Some(format!("{where_}: first {keep} of {total} kept"))
        }
        Value::String(s) => {
            let total = s.len();
            let mut keep = total.saturating_sub(excess + 3).max(256);
            while keep > 0 && !s.is_char_boundary(keep) {
                keep -= 1;
            }
            if keep >= total {
                return None;
            }
            s.truncate(keep);
            s.push('…');
            Some(format!("{where_}: first {keep} of {total} bytes kept"))
        }
        _ => None,
    }
}

/// Shortens long names under [`NAME_KEYS`]; returns how many.
fn shorten_names(v: &mut Value, key: Option<&str>) -> usize {
    match v {
        Value::String(s) if key.is_some_and(|k| NAME_KEYS.contains(&k)) => {
            match shorten_type_name(s) {
                std::borrow::Cow::Owned(short) => {
                    *s = short;
                    1
                }
                std::borrow::Cow::Borrowed(_) => 0,
            }
        }
        Value::Object(m) => m
            .iter_mut()
            .map(|(k, v)| shorten_names(v, Some(k.as_str())))
            .sum(),
        Value::Array(a) => a.iter_mut().map(|v| shorten_names(v, key)).sum(),
        _ => 0,
    }
}

/// Cuts `text` at a line boundary to at most `max_bytes`, saying how much
/// was cut.
pub fn fit_text(text: &mut String, max_bytes: usize, hint: &str) {
    if text.len() <= max_bytes {
        return;
    }
    let total = text.len();
    let mut keep = max_bytes.saturating_sub(300);
    while keep > 0 && !text.is_char_boundary(keep) {
        keep -= 1;
    }
    if let Some(nl) = text[..keep].rfind('\n') {
        keep = nl + 1;
    }
    let lines_cut = text[keep..].lines().count();
    text.truncate(keep);
    text.push_str(&format!(
        "… [text cut to fit max_bytes={max_bytes}: {} of {total} bytes, {lines_cut} more line(s) not shown. {hint}]\n",
        keep
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_a_big_answer_and_says_what_was_cut() {
        let children: Vec<Value> = (0..1000)
            .map(|i| json!({"name": format!("[{i}]"), "type": "int", "value": format!("{i}")}))
            .collect();
        let mut answer = json!({
            "value": {"name": "m", "type": "std::map<int, int>", "value": "map(len 1000)", "children": children},
            "frames": (0..40).map(|i| json!({"function": format!("f{i}"), "text": "x".repeat(2000)})).collect::<Vec<_>>()
        });
        let cuts = fit(&mut answer, DEFAULT_MAX_BYTES);
        assert!(serde_json::to_string(&answer).unwrap().len() <= DEFAULT_MAX_BYTES);
        assert!(!cuts.notes.is_empty());
        assert_eq!(answer["value"]["truncated"], json!(true));
        let note = cuts.json(DEFAULT_MAX_BYTES, "ask for less");
        answer["cut"] = note;
        assert!(serde_json::to_string(&answer).unwrap().len() <= DEFAULT_MAX_BYTES);
    }

    #[test]
    fn cuts_text_at_a_line_and_says_so() {
        let mut text = "line of text\n".repeat(10_000);
        fit_text(&mut text, DEFAULT_MAX_BYTES, "raise max_bytes");
        assert!(text.len() <= DEFAULT_MAX_BYTES);
        assert!(text.contains("text cut to fit max_bytes=32768"));
    }
}
