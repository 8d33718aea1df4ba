//! `diccae-engine features`: the model inputs of a dataset, exactly as
//! training sees them, written to one safetensors file.
//!
//! Tensors: `train.audio` / `test.audio` `[N, n_mels, audio_frames]`
//! (normalised log-mel), `train.video` / `test.video` `[N, T, 3, S, S]`
//! (ImageNet-normalised frames), both F32, and `train.labels` /
//! `test.labels` `[N]` I64 when the clips are labelled. Metadata (strings):
//! `classes` (JSON list), `train_ids` / `test_ids` (JSON lists), `norm_mean`,
//! `norm_std` (the log-mel statistics of the training split) and `config`
//! (the resolved TOML). Other tools (the PyTorch reference in
//! `bench/realdata/`, a user's notebook) then train on the very same inputs.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, tensor::TensorView};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::train::features::{Dataset, FeatureSet};

/// Writes `dataset`'s inputs to `path` (atomically: a temporary file, then
/// a rename) and returns the number of bytes written.
pub fn export_features(dataset: &Dataset, cfg: &Config, path: &Path) -> Result<u64> {
    let d = &cfg.data;
    let io = |detail: String| Error::Io {
        path: path.display().to_string(),
        detail,
    };
    let mut raws: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, set) in [("train", &dataset.train), ("test", &dataset.test)] {
        let n = set.len();
        raws.push((
            format!("{name}.audio"),
            Dtype::F32,
            vec![n, d.n_mels, d.audio_frames],
            f32_bytes(&set.audio),
        ));
        raws.push((
            format!("{name}.video"),
            Dtype::F32,
            vec![n, d.frames, 3, d.frame_size, d.frame_size],
            f32_bytes(&set.video),
        ));
        if let Some(labels) = &set.labels {
            let bytes = labels
                .iter()
                .flat_map(|&y| (y as i64).to_le_bytes())
                .collect();
            raws.push((format!("{name}.labels"), Dtype::I64, vec![n], bytes));
        }
    }
    let views = raws
        .iter()
        .map(|(k, dtype, shape, raw)| {
            TensorView::new(*dtype, shape.clone(), raw)
                .map(|v| (k.clone(), v))
                .map_err(|e| io(format!("tensor {k}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let ids = |set: &FeatureSet| serde_json::to_string(&set.ids).unwrap_or_default();
    let metadata = HashMap::from([
        (
            "classes".to_string(),
            serde_json::to_string(&dataset.classes).unwrap_or_default(),
        ),
        ("train_ids".to_string(), ids(&dataset.train)),
        ("test_ids".to_string(), ids(&dataset.test)),
        ("norm_mean".to_string(), dataset.norm.mean.to_string()),
        ("norm_std".to_string(), dataset.norm.std.to_string()),
        ("config".to_string(), cfg.to_toml()?),
    ]);
    let blob = safetensors::serialize(views, Some(metadata))
        .map_err(|e| io(format!("cannot encode the features: {e}")))?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| io(format!("cannot create its directory: {e}")))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, &blob).map_err(|e| io(format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| io(format!("cannot rename into place: {e}")))?;
    Ok(blob.len() as u64)
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
