//! `metrics.jsonl`: one JSON object per line, appended as training goes
//! (`kind` = `epoch`, `cluster`, `rejected_step`, `summary`).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

/// An append-only JSON-lines log.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

fn io(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        detail: format!("{what}: {e}"),
    }
}

/// The epoch a record belongs to, if any.
fn record_epoch(v: &Value) -> Option<u64> {
    v.get("epoch")
        .or_else(|| v.get("record").and_then(|r| r.get("epoch")))
        .or_else(|| v.get("round").and_then(|r| r.get("epoch")))
        .and_then(Value::as_u64)
}

impl MetricsLog {
    /// Opens `path` for appending. Records from epoch `keep_before` on (and
    /// old summaries) are dropped first, so a resumed run does not log an
    /// epoch twice; a fresh run (`keep_before = 0`) starts an empty file.
    pub fn open(path: &Path, keep_before: usize) -> Result<Self> {
        let mut kept = String::new();
        if keep_before > 0 && path.exists() {
            let f = File::open(path).map_err(|e| io(path, "cannot read", e))?;
            for line in BufReader::new(f).lines() {
                let line = line.map_err(|e| io(path, "cannot read", e))?;
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let is_summary = v.get("kind").and_then(Value::as_str) == Some("summary");
                if !is_summary && record_epoch(&v).is_none_or(|e| e < keep_before as u64) {
                    kept.push_str(&line);
                    kept.push('\n');
                }
            }
        }
        crate::atomic_file::write_atomic(path, kept.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| io(path, "cannot open", e))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one record and flushes it.
    pub fn write(&mut self, record: &Value) -> Result<()> {
        let line = serde_json::to_string(record)
            .map_err(|e| io(&self.path, "cannot encode", std::io::Error::other(e)))?;
        crate::fault::write_all(
            "metrics.jsonl",
            &mut self.file,
            format!("{line}\n").as_bytes(),
        )
        .and_then(|_| self.file.flush())
        .map_err(|e| io(&self.path, "cannot append", e))
    }
}
