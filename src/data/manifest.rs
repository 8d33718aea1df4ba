//! The dataset manifest: a JSON-lines file, one clip per line.
//!
//! ```text
//! {"id": "clip-001", "audio": "clips/clip-001.wav", "frames": ["f0.png", "f1.png"], "label": "dog", "split": "train"}
//! {"id": "clip-002", "audio": "clips/clip-002.wav", "frames": "frames/clip-002/"}
//! ```
//!
//! Keys: `id` (unique, non-empty), `audio` (a WAV file), `frames` (a list of
//! image files or a directory of them, see [`FrameSpec`]), optional `label`
//! (a class name) and optional `split` (`"train"` or `"test"`). Paths are
//! relative to the manifest's directory. Any other key is an error, so a
//! typo such as `"lable"` is caught instead of silently dropping labels.
//! Blank lines are skipped.
//!
//! **Split rule for clips without `split`**: the clip goes to the test split
//! when the 64-bit FNV-1a hash of its id is divisible by 5, otherwise to
//! train: a deterministic ~80/20 split that depends only on the id, so adding
//! or removing other clips never moves a clip between splits.
//!
//! **Labels**: the distinct label strings, sorted, are the class names; a
//! clip's label is its index in that list. Clips may be unlabelled.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::frames::{FrameSpec, frame_paths};
use crate::error::{Error, Result};

/// File name looked up when [`Manifest::load`] is given a directory.
pub const MANIFEST_FILE_NAME: &str = "manifest.jsonl";

/// Which part of the dataset a clip belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// Used for (pre)training and for fitting probes.
    Train,
    /// Held out for evaluation.
    Test,
}

impl Split {
    /// The split of a clip whose manifest line gives none: `Test` when the
    /// FNV-1a 64 hash of `id` is divisible by 5, else `Train`.
    pub fn from_id_hash(id: &str) -> Split {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in id.as_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        if h.is_multiple_of(5) {
            Split::Test
        } else {
            Split::Train
        }
    }
}

/// One clip of the manifest, with its paths resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Clip {
    /// The clip's unique id.
    pub id: String,
    /// The WAV file (manifest directory joined with the `audio` field).
    pub audio: PathBuf,
    /// The `frames` field as written in the manifest.
    pub frames: FrameSpec,
    /// The directory `frames` is relative to (the manifest's directory).
    pub base_dir: PathBuf,
    /// Class index into [`Manifest::classes`], if the clip is labelled.
    pub label: Option<usize>,
    /// The clip's split (given, or from [`Split::from_id_hash`]).
    pub split: Split,
    /// 1-based line of the manifest the clip came from.
    pub line: usize,
}

impl Clip {
    /// The clip's frame image paths (see [`frame_paths`]).
    pub fn frame_paths(&self) -> Result<Vec<PathBuf>> {
        frame_paths(&self.frames, &self.base_dir)
    }
}

/// A loaded manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The manifest file.
    pub path: PathBuf,
    /// Its directory, which relative paths are resolved against.
    pub base_dir: PathBuf,
    /// The clips, in file order.
    pub clips: Vec<Clip>,
    /// Sorted distinct label names; a clip's label indexes this list.
    pub classes: Vec<String>,
}

/// One manifest line as written.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a JSON object with keys id, audio, frames and optionally label, split"
)]
struct RawClip {
    id: String,
    audio: String,
    frames: serde_json::Value,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    split: Option<String>,
}

impl Manifest {
    /// Loads a manifest file, or `DIR/manifest.jsonl` when given a directory.
    ///
    /// Errors ([`Error::Data`] naming the file and, for a bad line, its
    /// number): file not found or unreadable, invalid JSON, a missing or
    /// mistyped `id`/`audio`/`frames`, an unknown key, an empty id, a
    /// duplicate id, an unknown split value, or no clips at all.
    pub fn load(path_or_dir: impl AsRef<Path>) -> Result<Self> {
        let given = path_or_dir.as_ref();
        let path = if given.is_dir() {
            given.join(MANIFEST_FILE_NAME)
        } else {
            given.to_path_buf()
        };
        if !path.is_file() {
            return Err(Error::data(&path, "manifest not found"));
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| Error::data(&path, format!("cannot read manifest: {e}")))?;
        // A UTF-8 byte-order mark (some editors write one) is not JSON.
        let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let text = std::str::from_utf8(body).map_err(|e| {
            let at = e.valid_up_to();
            let line = 1 + body[..at].iter().filter(|&&b| b == b'\n').count();
            Error::data(
                &path,
                format!(
                    "line {line}: not valid UTF-8 (byte {} of the file); save the manifest as UTF-8",
                    at + (bytes.len() - body.len())
                ),
            )
        })?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut raws = Vec::new();
        let mut first_line: HashMap<String, usize> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let lineno = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let at = |detail: String| Error::data(&path, format!("line {lineno}: {detail}"));
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| at(describe_json_error(&e)))?;
            if !value.is_object() {
                return Err(at(format!(
                    "expected a JSON object with keys id, audio, frames (and optionally label, \
                     split), got {value}"
                )));
            }
            let raw = RawClip::deserialize(value).map_err(|e| at(describe_json_error(&e)))?;
            if raw.id.is_empty() {
                return Err(at("`id` is empty".into()));
            }
            if let Some(&prev) = first_line.get(&raw.id) {
                return Err(at(format!(
                    "duplicate id \"{}\" (first used on line {prev})",
                    raw.id
                )));
            }
            first_line.insert(raw.id.clone(), lineno);
            let frames = parse_frames(&raw.frames).map_err(at)?;
            let split = match raw.split.as_deref() {
                None => Split::from_id_hash(&raw.id),
                Some("train") => Split::Train,
                Some("test") => Split::Test,
                Some(other) => {
                    return Err(at(format!(
                        "unknown split \"{other}\" (expected \"train\" or \"test\")"
                    )));
                }
            };
            raws.push((lineno, raw, frames, split));
        }
        if raws.is_empty() {
            return Err(Error::data(&path, "manifest contains no clips"));
        }
        let classes: Vec<String> = raws
            .iter()
            .filter_map(|(_, r, _, _)| r.label.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let clips = raws
            .into_iter()
            .map(|(line, raw, frames, split)| Clip {
                label: raw
                    .label
                    .as_ref()
                    .and_then(|l| classes.binary_search(l).ok()),
                audio: base_dir.join(&raw.audio),
                id: raw.id,
                frames,
                base_dir: base_dir.clone(),
                split,
                line,
            })
            .collect();
        Ok(Self {
            path,
            base_dir,
            clips,
            classes,
        })
    }

    /// Number of classes (distinct labels).
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The clips of one split, in file order.
    pub fn split(&self, split: Split) -> impl Iterator<Item = &Clip> {
        self.clips.iter().filter(move |c| c.split == split)
    }
}

/// Converts the `frames` value: a non-empty list of strings or a string.
fn parse_frames(v: &serde_json::Value) -> std::result::Result<FrameSpec, String> {
    match v {
        serde_json::Value::String(dir) if !dir.is_empty() => Ok(FrameSpec::Dir(dir.clone())),
        serde_json::Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|it| match it {
                serde_json::Value::String(s) if !s.is_empty() => Ok(s.clone()),
                other => Err(format!(
                    "`frames` list items must be non-empty file names, got {other}"
                )),
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(FrameSpec::Files),
        other => Err(format!(
            "`frames` must be a non-empty list of image files or a directory name, got {other}"
        )),
    }
}

/// A serde_json error without its own "at line 1 column N" suffix (every
/// manifest line is parsed alone; the column is kept when known), with
/// syntax errors marked as invalid JSON.
fn describe_json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = match msg.rfind(" at line ") {
        Some(p) if e.column() > 0 => format!("{} (column {})", &msg[..p], e.column()),
        Some(p) => msg[..p].to_string(),
        None => msg,
    };
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("invalid JSON: {msg}")
        }
        _ => msg,
    }
}
