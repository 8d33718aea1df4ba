//! CAV-MAE's data lists as an engine manifest, without re-extracting
//! anything: a user with CAV-MAE's pre-extracted WAVs and frames switches by
//! importing its JSON lists and label CSV.
//!
//! CAV-MAE's format (YuanGongND/cav-mae, `src/dataloader.py`): a JSON file
//! `{"data": [{"video_id": …, "wav": …, "video_path": …, "labels": …}]}`
//! per split, whose frames are `video_path/frame_{i}/{video_id}.jpg`
//! (`i` = 0..10 by default), and a label CSV `index,mid,display_name` whose
//! `mid`s the `labels` field lists, comma-separated.
//!
//! What the import writes: `manifest.jsonl` (one clip per imported entry,
//! absolute paths, the split of the list it came from, the label's
//! `display_name`) and `rejects.txt` (`video_id<TAB>reason` for every entry
//! left out: no WAV file, no frame file, an unknown label, a repeated
//! `video_id`). The engine's probes are single-label: a clip with several
//! labels keeps its first, and the import counts such clips.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;

use crate::atomic_file::write_atomic;
use crate::data::manifest::{MANIFEST_FILE_NAME, Split};
use crate::error::{Error, Result};

/// One entry of a CAV-MAE data list.
#[derive(Deserialize)]
struct Entry {
    video_id: String,
    wav: String,
    video_path: String,
    #[serde(default)]
    labels: String,
}

/// A CAV-MAE data list file.
#[derive(Deserialize)]
struct DataList {
    data: Vec<Entry>,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportReport {
    /// Clips written to the manifest.
    pub clips: usize,
    /// Of those, clips that listed more than one label (the first is kept).
    pub multi_label: usize,
    /// Of those, clips with fewer frame files than asked for.
    pub missing_frames: usize,
    /// Entries left out, as (video_id, reason).
    pub rejects: Vec<(String, String)>,
}

/// Reads CAV-MAE's label CSV (`index,mid,display_name`, a header line, quoted
/// names may hold commas) into `mid → display_name`.
pub fn read_label_csv(path: &Path) -> Result<HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path)
        .map_err(|e| Error::data(path, format!("cannot read the label CSV: {e}")))?;
    let headers = reader
        .headers()
        .map_err(|e| Error::data(path, format!("label CSV header: {e}")))?
        .clone();
    let col = |name: &str| {
        headers.iter().position(|h| h.trim() == name).ok_or_else(|| {
            Error::data(
                path,
                format!("the label CSV has no `{name}` column (header: {headers:?}); CAV-MAE's is index,mid,display_name"),
            )
        })
    };
    let (mid, name) = (col("mid")?, col("display_name")?);
    let mut out = HashMap::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| Error::data(path, format!("line {}: {e}", i + 2)))?;
        let (Some(m), Some(n)) = (row.get(mid), row.get(name)) else {
            return Err(Error::data(path, format!("line {}: too few fields", i + 2)));
        };
        out.insert(m.trim().to_string(), n.trim().to_string());
    }
    if out.is_empty() {
        return Err(Error::data(path, "the label CSV lists no labels"));
    }
    Ok(out)
}

/// A path of a list resolved against the list's directory (CAV-MAE's lists
/// usually hold absolute paths).
fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Imports CAV-MAE data lists (`lists`: each file with the split its clips
/// go to) with `frames` frames per clip and, when given, the label CSV;
/// writes `out/manifest.jsonl` and `out/rejects.txt`.
pub fn import(
    lists: &[(PathBuf, Split)],
    labels_csv: Option<&Path>,
    frames: usize,
    out: &Path,
) -> Result<ImportReport> {
    if frames == 0 {
        return Err(Error::invalid(
            "import-cavmae",
            "--frames must be at least 1",
        ));
    }
    let names = labels_csv.map(read_label_csv).transpose()?;
    let mut report = ImportReport::default();
    let mut lines = String::new();
    let mut seen = HashSet::new();
    for (list, split) in lists {
        let text = std::fs::read_to_string(list)
            .map_err(|e| Error::data(list, format!("cannot read the data list: {e}")))?;
        let parsed: DataList = serde_json::from_str(&text).map_err(|e| {
            Error::data(
                list,
                format!("not a CAV-MAE data list ({{\"data\": [{{\"video_id\", \"wav\", \"video_path\", \"labels\"}}]}}): {e}"),
            )
        })?;
        let base = list.parent().unwrap_or(Path::new("."));
        for entry in parsed.data {
            let id = entry.video_id.clone();
            let mut reject = |why: String| report.rejects.push((id.clone(), why));
            if !seen.insert(entry.video_id.clone()) {
                reject(format!("video_id repeated (in {})", list.display()));
                continue;
            }
            let wav = resolve(base, &entry.wav);
            if !wav.is_file() {
                reject(format!("no WAV file at {}", wav.display()));
                continue;
            }
            let dir = resolve(base, &entry.video_path);
            let found: Vec<String> = (0..frames)
                .map(|i| {
                    dir.join(format!("frame_{i}"))
                        .join(format!("{}.jpg", entry.video_id))
                })
                .filter(|p| p.is_file())
                .map(|p| p.display().to_string())
                .collect();
            if found.is_empty() {
                reject(format!(
                    "no frame file {}/frame_{{0..{}}}/{}.jpg",
                    dir.display(),
                    frames - 1,
                    entry.video_id
                ));
                continue;
            }
            let mids: Vec<&str> = entry
                .labels
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .collect();
            let label = match (&names, mids.first()) {
                (_, None) => None,
                (None, Some(m)) => Some(m.to_string()),
                (Some(n), Some(m)) => match n.get(*m) {
                    Some(name) => Some(name.clone()),
                    None => {
                        reject(format!("label {m} is not in the label CSV"));
                        continue;
                    }
                },
            };
            report.multi_label += usize::from(mids.len() > 1);
            report.missing_frames += usize::from(found.len() < frames);
            let split = match split {
                Split::Train => "train",
                Split::Test => "test",
            };
            let mut line = json!({
                "id": entry.video_id,
                "audio": wav.display().to_string(),
                "frames": found,
                "split": split,
            });
            if let Some(l) = label {
                line["label"] = json!(l);
            }
            lines.push_str(&line.to_string());
            lines.push('\n');
            report.clips += 1;
        }
    }
    if report.clips == 0 {
        return Err(Error::invalid(
            "import-cavmae",
            format!(
                "no entry of the lists could be imported ({} rejected; the first: {})",
                report.rejects.len(),
                report
                    .rejects
                    .first()
                    .map_or("none".to_string(), |(id, why)| format!("{id}: {why}"))
            ),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.display().to_string(),
        detail: format!("cannot create the output directory: {e}"),
    })?;
    write_atomic(&out.join(MANIFEST_FILE_NAME), lines.as_bytes())?;
    let rejects: String = report
        .rejects
        .iter()
        .map(|(id, why)| format!("{id}\t{why}\n"))
        .collect();
    write_atomic(&out.join("rejects.txt"), rejects.as_bytes())?;
    Ok(report)
}
