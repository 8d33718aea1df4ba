//! A run directory before training starts: what may be in it, what
//! `--resume` continues from and `--overwrite` replaces, and the identity of
//! the data a run trains on (recorded in its checkpoints so that a resume
//! refuses other data).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::error::{Error, Result};
use crate::train::console::Console;
use crate::train::features::Dataset;

/// What a training run writes into its directory: a directory holding any
/// of these holds a run, which `train` continues only with `--resume` and
/// replaces only with `--overwrite`.
const RUN_FILES: [&str; 7] = [
    "checkpoints",
    "metrics.jsonl",
    "config.toml",
    "summary.json",
    "report.md",
    "plots",
    "skipped.txt",
];

/// Makes `out` ready for a run: creates it, removes unfinished checkpoint
/// writes (saying so on `console`), and returns the checkpoint to resume
/// from (`resume`), or removes an old run (`overwrite`), or refuses to train
/// over one.
pub fn prepare(
    out: &Path,
    resume: bool,
    overwrite: bool,
    console: Console,
) -> Result<Option<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.display().to_string(),
        detail: format!("cannot create the run directory: {e}"),
    })?;
    let ckpt_dir = out.join("checkpoints");
    let unfinished = checkpoint::remove_temporaries(&ckpt_dir)?;
    if unfinished > 0 {
        console.say(format!(
            "removed {unfinished} unfinished checkpoint write(s) from {}",
            ckpt_dir.display()
        ));
    }
    if resume {
        return Ok(Some(checkpoint::latest(&ckpt_dir)?.ok_or_else(|| {
            Error::Training(format!(
                "--resume: no checkpoint in {}; start the run without --resume",
                ckpt_dir.display()
            ))
        })?));
    }
    let held: Vec<&str> = RUN_FILES
        .iter()
        .copied()
        .filter(|f| out.join(f).exists())
        .collect();
    if !held.is_empty() && !overwrite {
        return Err(Error::Training(format!(
            "{} already holds a run ({}); continue it with --resume, replace it with --overwrite, or choose another --out",
            out.display(),
            held.join(", ")
        )));
    }
    for f in held {
        let p = out.join(f);
        let removed = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        removed.map_err(|e| Error::Io {
            path: p.display().to_string(),
            detail: format!("--overwrite: cannot remove the old run's file: {e}"),
        })?;
    }
    Ok(None)
}

/// The data a run trains on: the manifest as given and its size and CRC-32,
/// or no manifest for the built-in dataset (which the configuration
/// determines).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataIdentity {
    manifest: Option<String>,
    bytes: u64,
    crc32: u32,
}

impl DataIdentity {
    /// The identity of `data` (a manifest file or a directory holding one).
    pub fn of(data: Option<&Path>) -> Result<Self> {
        let Some(given) = data else {
            return Ok(DataIdentity {
                manifest: None,
                bytes: 0,
                crc32: 0,
            });
        };
        let file = if given.is_dir() {
            given.join(crate::data::manifest::MANIFEST_FILE_NAME)
        } else {
            given.to_path_buf()
        };
        let bytes = std::fs::read(&file).map_err(|e| Error::Io {
            path: file.display().to_string(),
            detail: format!("cannot read the manifest: {e}"),
        })?;
        Ok(DataIdentity {
            manifest: Some(given.display().to_string()),
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(&bytes),
        })
    }

    /// Refuses to resume a run whose checkpoint `state` recorded other data
    /// than this (checkpoints from before the record are not checked).
    pub fn check_resume(&self, state: &serde_json::Value) -> Result<()> {
        let Some(saved) = state.get("data").filter(|v| !v.is_null()) else {
            return Ok(());
        };
        let saved: DataIdentity = serde_json::from_value(saved.clone()).map_err(|e| {
            Error::Training(format!("cannot resume: the checkpoint's data record: {e}"))
        })?;
        let refuse = |d: String| Err(Error::Training(format!("cannot resume: {d}")));
        match (&saved.manifest, &self.manifest) {
            (Some(m), None) => refuse(format!(
                "this run trained on {m}, not on the built-in data; resume with --data {m}"
            )),
            (None, Some(g)) => refuse(format!(
                "this run trained on the built-in data, not on {g}; resume without --data"
            )),
            (Some(m), Some(g)) if (saved.bytes, saved.crc32) != (self.bytes, self.crc32) => {
                refuse(format!(
                    "{g} ({} bytes, CRC-32 {:08x}) is not the manifest this run trained on ({m}: {} bytes, CRC-32 {:08x}); the run's pseudo-labels and data order index that manifest's clips, so resume with it, or start a new run",
                    self.bytes, self.crc32, saved.bytes, saved.crc32
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Says what data a run uses and lists the clips that could not be read in
/// `out/skipped.txt` (the first five also on stderr).
pub fn report_dataset(console: Console, out: &Path, d: &Dataset) -> Result<()> {
    console.say(format!(
        "data: {} ({} train / {} test clips, {} classes)",
        d.name,
        d.train.len(),
        d.test.len(),
        d.classes.len()
    ));
    if !d.skipped.is_empty() {
        let path = out.join("skipped.txt");
        crate::atomic_file::write_atomic(&path, (d.skipped.join("\n") + "\n").as_bytes())?;
        eprintln!(
            "warning: skipped {} clips that could not be read (all listed in {}):",
            d.skipped.len(),
            path.display()
        );
        for s in d.skipped.iter().take(5) {
            eprintln!("  {s}");
        }
    }
    Ok(())
}
