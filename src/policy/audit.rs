//! The audit log: one JSON line per tool call and per probe state change.
//!
//! A line that cannot be written is an error the caller must act on: a
//! tool call whose line cannot be written is refused, never run unaudited.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why a line could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to the audit log {path}: {source}")]
pub struct AuditError {
    pub path: String,
    pub source: std::io::Error,
}

/// An append-only JSON-lines file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    /// One writer at a time, so lines never interleave.
    write_lock: Mutex<()>,
    /// The last state written for each probe, so a state is written once.
    probe_states: Mutex<HashMap<u64, String>>,
}

impl AuditLog {
    /// Opens (creating) `path` for appending, to find out at start-up that it
    /// cannot be.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let log = AuditLog {
            path: path.to_path_buf(),
            write_lock: Mutex::new(()),
            probe_states: Mutex::new(HashMap::new()),
        };
        log.open_file().map(drop)?;
        Ok(log)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, source: std::io::Error) -> AuditError {
        AuditError {
            path: self.path.display().to_string(),
            source,
        }
    }

    // Reopened for every line: a log rotated away (renamed, then a new file
    // made) is followed, and a file that became unwritable is noticed.
    fn open_file(&self) -> Result<std::fs::File, AuditError> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            // Arguments can name what an operator looks at: owner-only when
            // we create it.
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| self.error(e))
    }

    /// Appends `record` (an object) with the time and this server's pid
    /// added, as one line written in one `write`.
    pub fn write(&self, mut record: serde_json::Value) -> Result<(), AuditError> {
        if let serde_json::Value::Object(m) = &mut record {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            m.insert("time_unix_ms".into(), now_ms.into());
            m.insert("server_pid".into(), std::process::id().into());
        }
        let mut line = record.to_string();
        line.push('\n');
        let _one_writer = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut file = self.open_file()?;
        // One write_all of the whole line on an O_APPEND file: other
        // liveprobes appending to the same file cannot split it.
        file.write_all(line.as_bytes()).map_err(|e| self.error(e))?;
        file.flush().map_err(|e| self.error(e))
    }

    /// Writes a `probe_state` line when `state` differs from the last one
    /// written for `probe_id`.
    pub fn probe_state(
        &self,
        probe_id: u64,
        pid: i32,
        location: &str,
        state: &str,
        reason: Option<&str>,
    ) -> Result<(), AuditError> {
        {
            let known = self.probe_states.lock().unwrap_or_else(|e| e.into_inner());
            if known.get(&probe_id).map(String::as_str) == Some(state) {
                return Ok(());
            }
        }
        self.write(serde_json::json!({
            "event": "probe_state",
            "probe_id": probe_id,
            "pid": pid,
            "location": location,
            "state": state,
            "reason": reason,
        }))?;
        self.probe_states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(probe_id, state.to_string());
        Ok(())
    }

    /// Writes a `gone` line for every probe seen before and not in
    /// `present` any more (a probe dropped before its end was seen).
    pub fn probes_gone(&self, present: &[u64]) -> Result<(), AuditError> {
        let gone: Vec<u64> = self
            .probe_states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|id| !present.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.write(serde_json::json!({
                "event": "probe_state",
                "probe_id": id,
                "state": "gone",
                "reason": "no longer listed by liveprobe",
            }))?;
            self.probe_states
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
        Ok(())
    }
}

/// Replaces the value of every object key that `is_secret` says names a
/// secret, at any depth, so an audit line never holds it.
pub fn redact_keys(value: &mut serde_json::Value, is_secret: &dyn Fn(&str) -> bool) {
    match value {
        serde_json::Value::Object(m) => {
            for (key, v) in m.iter_mut() {
                if is_secret(key) {
                    *v = serde_json::Value::String("<redacted>".into());
                } else {
                    redact_keys(v, is_secret);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                redact_keys(v, is_secret);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_device_is_an_error_not_a_silence() {
        let log = AuditLog::open(Path::new("/dev/full")).unwrap_or_else(|e| panic!("{e}"));
        let err = log.write(serde_json::json!({"event": "x"}));
        assert!(err.is_err());
    }

    #[test]
    fn lines_are_whole_and_states_written_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..2 {
            log.probe_state(1, 5, "a.c:3", "armed", None)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        log.probes_gone(&[]).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_default())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["state"], "armed");
        assert_eq!(lines[1]["state"], "gone");
    }

    #[test]
    fn secret_keys_are_redacted_at_any_depth() {
        let mut v = serde_json::json!({"pid": 1, "headers": [{"password": "x", "name": "y"}]});
        redact_keys(&mut v, &|k| k == "password");
        assert_eq!(v["headers"][0]["password"], "<redacted>");
        assert_eq!(v["headers"][0]["name"], "y");
    }
}
