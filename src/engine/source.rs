//! `list_source`: source text from disk at the path the debug info names,
//! with the lines where a probe can go marked from the line table.

use std::path::Path;

use crate::debuginfo::ProcessImage;

use super::EngineError;
use super::report::{SourceLine, SourceListing};

/// Lines shown either side of the asked line by default.
const DEFAULT_CONTEXT: u32 = 10;
/// Lines shown from the top when no line is asked for.
const DEFAULT_HEAD: u32 = 60;
/// Longest text kept of one line: generated code can have enormous lines.
const MAX_LINE_CHARS: usize = 400;

/// Reads `file` (a base name or path suffix) and returns the lines around
/// `line`, each marked with whether it has code.
pub fn list_source(
    image: &ProcessImage,
    file: &str,
    line: Option<u32>,
    context: Option<u32>,
) -> Result<SourceListing, EngineError> {
    let info = image.source_file(file)?;
    let text = std::fs::read(&info.path).map_err(|e| {
        EngineError::BadArgument(format!(
            "the debug info names {} as the source of {}, but it cannot be read on this machine ({e}); \
             copy the sources there, or run liveprobe where the program was built",
            info.path.display(),
            file
        ))
    })?;
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    let total = all.len();
    let (first, last) = match line {
        Some(0) => {
            return Err(EngineError::BadArgument(
                "line numbers start at 1".to_string(),
            ));
        }
        Some(l) if l as usize > total => {
            let near: Vec<String> = info
                .code_lines
                .range(..=l)
                .next_back()
                .map(|n| n.to_string())
                .into_iter()
                .collect();
            return Err(EngineError::BadArgument(format!(
                "{} has {total} lines; ask for a line between 1 and {total}{}",
                info.path.display(),
                if near.is_empty() {
                    String::new()
                } else {
                    format!(" (the last line with code is {})", near.join(", "))
                }
            )));
        }
        Some(l) => {
            let c = context.unwrap_or(DEFAULT_CONTEXT);
            (l.saturating_sub(c).max(1), l.saturating_add(c))
        }
        None => (1, context.unwrap_or(DEFAULT_HEAD).max(1)),
    };
    let last = last.min(total as u32);
    let lines = (first..=last)
        .filter_map(|n| {
            let raw = all.get(n as usize - 1)?;
            let text: String = raw.chars().take(MAX_LINE_CHARS).collect();
            Some(SourceLine {
                line: n,
                text,
                code: info.code_lines.contains(&n),
            })
        })
        .collect();
    Ok(SourceListing {
        file: info.path.display().to_string(),
        lines,
        total_lines: total,
        stale: is_newer(&info.path, &info.module_path),
    })
}

/// True when `source` was modified after `binary`: its lines may have moved.
fn is_newer(source: &Path, binary: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(source), modified(binary)) {
        (Some(s), Some(b)) => s > b,
        _ => false,
    }
}
