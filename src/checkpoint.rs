//! Checkpoints: tensors in safetensors, the rest of the training state in
//! JSON, written atomically and verified before they are loaded.
//!
//! Layout inside a run's checkpoint directory:
//! ```text
//! checkpoints/
//!   epoch-0003/tensors.safetensors   weights, optimiser moments, prototypes, W
//!   epoch-0003/state.json            epoch, step, config, RNG, ... the byte
//!                                    length and CRC-32 of tensors.safetensors,
//!                                    and the CRC-32 of the state itself
//!   latest                           the name of the newest complete checkpoint
//! ```
//! A checkpoint is written into a hidden temporary directory, flushed to
//! disk and renamed into place; only then is `latest` replaced (again by
//! rename). A crash at any moment leaves the previous checkpoint intact, and
//! a damaged or truncated file is refused with a message naming it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::fault;

/// A host-side tensor in a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major data.
    pub data: Vec<f32>,
}

/// Everything a checkpoint holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Named tensors (weights, optimiser moments, prototypes, W).
    pub tensors: BTreeMap<String, HostTensor>,
    /// The rest of the state, as JSON.
    pub state: Value,
}

const TENSORS_FILE: &str = "tensors.safetensors";
const STATE_FILE: &str = "state.json";
const LATEST_FILE: &str = "latest";
/// The key of `state.json` holding the CRC-32 of the rest of the state.
const STATE_CRC_KEY: &str = "state_crc32";

/// CRC-32 of `state` in its compact JSON form (object keys sorted), the
/// form both `save` and `load` compute it on.
fn state_checksum(state: &Value, path: &Path) -> Result<u32> {
    let text = serde_json::to_string(state)
        .map_err(|e| corrupt(path, format!("cannot encode state: {e}")))?;
    Ok(crc32fast::hash(text.as_bytes()))
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::Checkpoint {
        path: path.display().to_string(),
        detail: format!("{what}: {e}"),
    }
}

fn corrupt(path: &Path, detail: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

/// Writes `bytes` to `path` and flushes them to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(|e| io_err(path, "cannot create", e))?;
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    fault::write_all(
        file.trim_start_matches('.').trim_end_matches(".tmp"),
        &mut f,
        bytes,
    )
    .map_err(|e| io_err(path, "cannot write", e))?;
    f.sync_all().map_err(|e| io_err(path, "cannot flush", e))
}

/// Saves `ckpt` as `dir/name` and points `dir/latest` at it. Returns the
/// checkpoint's directory.
pub fn save(dir: &Path, name: &str, ckpt: &Checkpoint) -> Result<PathBuf> {
    fs::create_dir_all(dir).map_err(|e| io_err(dir, "cannot create directory", e))?;
    let mut bytes_of: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(ckpt.tensors.len());
    for (k, t) in &ckpt.tensors {
        if t.shape.iter().product::<usize>() != t.data.len() {
            return Err(corrupt(
                dir,
                format!(
                    "tensor {k}: shape {:?} does not match {} values",
                    t.shape,
                    t.data.len()
                ),
            ));
        }
        let raw: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes_of.push((k.clone(), t.shape.clone(), raw));
    }
    let views = bytes_of
        .iter()
        .map(|(k, shape, raw)| {
            TensorView::new(Dtype::F32, shape.clone(), raw)
                .map(|v| (k.clone(), v))
                .map_err(|e| corrupt(dir, format!("tensor {k}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let blob = safetensors::serialize(views, None)
        .map_err(|e| corrupt(dir, format!("cannot encode tensors: {e}")))?;

    let mut state = ckpt.state.clone();
    let Some(obj) = state.as_object_mut() else {
        return Err(corrupt(dir, "checkpoint state must be a JSON object"));
    };
    obj.insert("tensors_bytes".into(), Value::from(blob.len() as u64));
    obj.insert("tensors_crc32".into(), Value::from(crc32fast::hash(&blob)));
    let state_crc = state_checksum(&state, dir)?;
    if let Some(obj) = state.as_object_mut() {
        obj.insert(STATE_CRC_KEY.into(), Value::from(state_crc));
    }
    let state_text = serde_json::to_string_pretty(&state)
        .map_err(|e| corrupt(dir, format!("cannot encode state: {e}")))?;

    let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| io_err(&tmp, "cannot clear", e))?;
    }
    let target = dir.join(name);
    let placed = (|| {
        fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, "cannot create", e))?;
        write_synced(&tmp.join(TENSORS_FILE), &blob)?;
        write_synced(&tmp.join(STATE_FILE), state_text.as_bytes())?;
        fault::point("checkpoint:rename").map_err(|e| io_err(&tmp, "cannot move into place", e))?;
        if target.exists() {
            fs::remove_dir_all(&target).map_err(|e| io_err(&target, "cannot replace", e))?;
        }
        fs::rename(&tmp, &target).map_err(|e| io_err(&target, "cannot move into place", e))
    })();
    if placed.is_err() {
        // Free the space a full disk needs for the next attempt; the
        // previous checkpoint and `latest` are untouched.
        let _ = fs::remove_dir_all(&tmp);
        return placed.map(|_| target);
    }
    let latest_tmp = dir.join(format!(".{LATEST_FILE}.tmp"));
    let pointed = (|| {
        write_synced(&latest_tmp, name.as_bytes())?;
        fault::point("checkpoint:latest-rename")
            .map_err(|e| io_err(dir, "cannot update latest", e))?;
        fs::rename(&latest_tmp, dir.join(LATEST_FILE))
            .map_err(|e| io_err(dir, "cannot update latest", e))
    })();
    if pointed.is_err() {
        let _ = fs::remove_file(&latest_tmp);
    }
    pointed.map(|_| target)
}

/// Removes the temporary directories of checkpoint writes that never
/// finished (a kill or a full disk mid-write) from `dir`; returns how many.
/// A missing `dir` has none.
pub fn remove_temporaries(dir: &Path) -> Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(dir, "cannot list", e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, "cannot list", e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(".tmp-") && name != format!(".{LATEST_FILE}.tmp") {
            continue;
        }
        let path = entry.path();
        let result = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        result.map_err(|e| io_err(&path, "cannot remove the unfinished write", e))?;
        removed += 1;
    }
    Ok(removed)
}

/// Deletes all but the newest `keep` checkpoints `epoch-*` in `dir` (by
/// name, which orders them by epoch); the one `latest` names is always kept.
/// Returns how many were deleted.
pub fn prune(dir: &Path, keep: usize) -> Result<usize> {
    fault::point("checkpoint:prune").map_err(|e| io_err(dir, "cannot prune", e))?;
    let newest = latest(dir)?;
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(|e| io_err(dir, "cannot list", e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("epoch-"))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep.max(1));
    let mut removed = 0;
    for name in &names[..excess] {
        let path = dir.join(name);
        if newest.as_deref() == Some(path.as_path()) {
            continue;
        }
        fs::remove_dir_all(&path)
            .map_err(|e| io_err(&path, "cannot remove an old checkpoint", e))?;
        removed += 1;
    }
    Ok(removed)
}

/// The newest complete checkpoint in `dir`, if any.
pub fn latest(dir: &Path) -> Result<Option<PathBuf>> {
    let p = dir.join(LATEST_FILE);
    match fs::read_to_string(&p) {
        Ok(name) => Ok(Some(dir.join(name.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&p, "cannot read", e)),
    }
}

/// Loads and verifies the checkpoint in directory `path` (or, when `path`
/// holds a `latest` file, the checkpoint it names).
pub fn load(path: &Path) -> Result<Checkpoint> {
    let path = match latest(path)? {
        Some(p) if !path.join(STATE_FILE).exists() => p,
        _ => path.to_path_buf(),
    };
    let state_path = path.join(STATE_FILE);
    let text =
        fs::read_to_string(&state_path).map_err(|e| io_err(&state_path, "cannot read", e))?;
    let mut state: Value = serde_json::from_str(&text).map_err(|e| {
        corrupt(
            &state_path,
            format!("not valid JSON ({e}); the file is damaged or truncated, refusing to load"),
        )
    })?;
    let obj = state
        .as_object_mut()
        .ok_or_else(|| corrupt(&state_path, "state is not a JSON object"))?;
    // Checkpoints written before the state had its own checksum have none.
    if let Some(want) = obj.remove(STATE_CRC_KEY)
        && want.as_u64() != Some(u64::from(state_checksum(&state, &state_path)?))
    {
        return Err(corrupt(
            &state_path,
            "checksum mismatch: the file was edited or damaged; refusing to load",
        ));
    }
    let obj = state
        .as_object_mut()
        .ok_or_else(|| corrupt(&state_path, "state is not a JSON object"))?;
    let want_len = obj.remove("tensors_bytes").and_then(|v| v.as_u64());
    let want_crc = obj.remove("tensors_crc32").and_then(|v| v.as_u64());
    let (Some(want_len), Some(want_crc)) = (want_len, want_crc) else {
        return Err(corrupt(
            &state_path,
            "missing tensors_bytes / tensors_crc32; not a diccae-engine checkpoint",
        ));
    };
    let tensors_path = path.join(TENSORS_FILE);
    let blob = fs::read(&tensors_path).map_err(|e| io_err(&tensors_path, "cannot read", e))?;
    if blob.len() as u64 != want_len {
        return Err(corrupt(
            &tensors_path,
            format!(
                "truncated or damaged: {} bytes, expected {want_len}; refusing to load",
                blob.len()
            ),
        ));
    }
    if u64::from(crc32fast::hash(&blob)) != want_crc {
        return Err(corrupt(
            &tensors_path,
            "checksum mismatch: the file is damaged; refusing to load",
        ));
    }
    let st = SafeTensors::deserialize(&blob)
        .map_err(|e| corrupt(&tensors_path, format!("not a safetensors file: {e}")))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(corrupt(
                &tensors_path,
                format!("tensor {name} is {:?}, expected F32", view.dtype()),
            ));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(
            name,
            HostTensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(Checkpoint { tensors, state })
}
