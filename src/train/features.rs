//! A dataset held in memory as model inputs: every clip decoded once
//! (log-mel spectrogram and frames), normalised, and gathered into batches.
//!
//! Decoding runs in parallel before training starts, with a progress bar;
//! a clip that cannot be decoded is skipped, counted and named, never
//! silently dropped. Training-time augmentation happens when a batch is
//! gathered: a horizontal flip of the frames for DICCAE, two independently
//! augmented views of every clip for AVCL's SelfCL.

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use rand::Rng;
use rayon::prelude::*;

use crate::config::{Config, DataConfig};
use crate::data::augment::{AugmentConfig, augment_audio_batch, augment_video_normalised};
use crate::data::{
    ClipFeatures, ClipLoader, FeatureConfig, IMAGENET_MEAN, IMAGENET_STD, LogMel, Manifest,
    NormStats, Sampling, Split, fit_length, flip_horizontal,
};
use crate::error::{Error, Result};
use crate::rng::SeededRng;
use crate::synthetic::{SyntheticConfig, class_names, confusable_pairs};

/// The inputs of one split, row-major and contiguous.
#[derive(Clone, Debug, Default)]
pub struct FeatureSet {
    /// Clip ids.
    pub ids: Vec<String>,
    /// Normalised log-mel spectrograms `[N, n_mels, audio_frames]`.
    pub audio: Vec<f32>,
    /// Normalised frames `[N, T, 3, S, S]`.
    pub video: Vec<f32>,
    /// Class of every clip, when the whole split is labelled.
    pub labels: Option<Vec<usize>>,
}

impl FeatureSet {
    /// Number of clips.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the split has no clips.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Copies the clips `idx` into one audio and one video batch, mirroring
    /// each clip's frames with probability ½ when an RNG is given.
    pub fn gather(
        &self,
        idx: &[usize],
        frame_size: usize,
        flip: Option<&mut SeededRng>,
    ) -> (Vec<f32>, Vec<f32>) {
        let (na, nv) = (self.audio.len() / self.len(), self.video.len() / self.len());
        let mut audio = Vec::with_capacity(idx.len() * na);
        let mut video = Vec::with_capacity(idx.len() * nv);
        let mut flip = flip;
        for &i in idx {
            audio.extend_from_slice(&self.audio[i * na..(i + 1) * na]);
            let start = video.len();
            video.extend_from_slice(&self.video[i * nv..(i + 1) * nv]);
            if let Some(rng) = flip.as_deref_mut()
                && rng.random_bool(0.5)
            {
                for frame in video[start..].chunks_exact_mut(3 * frame_size * frame_size) {
                    flip_horizontal(frame, frame_size);
                }
            }
        }
        (audio, video)
    }

    /// Two augmented views of the clips `idx` (METHOD.md §4 SelfCL): audio
    /// `[2n, n_mels, audio_frames]` and video `[2n, T, 3, S, S]`, view 1 of
    /// every clip first, then view 2 in the same order. Each view of each clip
    /// is drawn independently from `rng` (see [`crate::data::augment`]).
    pub fn gather_views(
        &self,
        idx: &[usize],
        data: &DataConfig,
        augment: &AugmentConfig,
        rng: &mut SeededRng,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (mut audio, mut video) = self.gather(idx, data.frame_size, None);
        audio.extend_from_within(..);
        video.extend_from_within(..);
        augment_audio_batch(augment, &mut audio, data.n_mels, data.audio_frames, rng)?;
        let per_clip = data.frames * 3 * data.frame_size * data.frame_size;
        for clip in video.chunks_exact_mut(per_clip.max(1)) {
            augment_video_normalised(augment, clip, data.frames, data.frame_size, rng)?;
        }
        Ok((audio, video))
    }

    fn push(&mut self, clip: ClipFeatures) {
        self.ids.push(clip.id);
        self.audio.extend_from_slice(&clip.audio);
        self.video.extend_from_slice(&clip.video);
        match (&mut self.labels, clip.label) {
            (Some(l), Some(y)) => l.push(y),
            (labels, _) => *labels = None,
        }
    }
}

/// The shapes of one clip's inputs.
#[derive(Clone, Debug)]
pub struct InputShapes {
    /// `[n_mels, audio_frames]`.
    pub audio: Vec<usize>,
    /// `[frames, 3, frame_size, frame_size]`.
    pub video: Vec<usize>,
}

impl InputShapes {
    /// The input shapes `cfg.data` gives.
    pub fn of(cfg: &Config) -> Self {
        let d = &cfg.data;
        InputShapes {
            audio: vec![d.n_mels, d.audio_frames],
            video: vec![d.frames, 3, d.frame_size, d.frame_size],
        }
    }
}

/// A dataset ready for training and evaluation.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Where it came from ("built-in synthetic" or the manifest path).
    pub name: String,
    /// Pretraining split.
    pub train: FeatureSet,
    /// Held-out split.
    pub test: FeatureSet,
    /// Class names (empty when unlabelled).
    pub classes: Vec<String>,
    /// Log-mel normalisation computed on the training split.
    pub norm: NormStats,
    /// Pairs of classes known to be confusable (the built-in data's pairs).
    pub confusable_pairs: Vec<(usize, usize)>,
    /// Clips that could not be decoded: `id: reason`.
    pub skipped: Vec<String>,
}

fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {pos}/{len} clips ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// ImageNet normalisation of frames in [0, 1], layout `[.., 3, S, S]`.
fn normalise_frames(frames: &mut [f32], size: usize) {
    let plane = size * size;
    for rgb in frames.chunks_exact_mut(3 * plane) {
        for (c, ch) in rgb.chunks_exact_mut(plane).enumerate() {
            ch.iter_mut()
                .for_each(|v| *v = (*v - IMAGENET_MEAN[c]) / IMAGENET_STD[c]);
        }
    }
}

fn normalise_audio(set: &mut FeatureSet, norm: &NormStats) {
    norm.apply(&mut set.audio);
}

/// Statistics of the training spectrograms.
fn audio_stats(set: &FeatureSet, per_clip: usize) -> Result<NormStats> {
    NormStats::from_spectrograms(set.audio.chunks(per_clip.max(1)))
}

/// The manifest's clips when `data` names one, else the built-in dataset.
pub fn load(cfg: &Config, data: Option<&Path>) -> Result<Dataset> {
    match data {
        Some(p) => from_manifest(p, cfg),
        None => synthetic(cfg),
    }
}

/// The built-in synthetic dataset at the configured sizes.
pub fn synthetic(cfg: &Config) -> Result<Dataset> {
    let d = &cfg.data;
    let samples = LogMel::samples_for_frames(d.audio_frames);
    let syn = SyntheticConfig {
        n_classes: d.synthetic_classes,
        train_per_class: d.synthetic_train_per_class,
        test_per_class: d.synthetic_test_per_class,
        duration_s: samples as f32 / 16_000.0,
        sample_rate: 16_000,
        frames: d.frames,
        frame_size: d.frame_size,
        seed: cfg.train.seed,
    };
    syn.validate()?;
    let logmel = LogMel::new(d.n_mels)?;
    let make = |split: Split, what: &str| -> Result<FeatureSet> {
        let n = syn.per_class(split) * syn.n_classes;
        let bar = progress(n, what);
        let clips: Vec<Result<ClipFeatures>> = (0..n)
            .into_par_iter()
            .map(|i| {
                let c = syn.clip(split, i % syn.n_classes, i / syn.n_classes);
                let audio = logmel.compute(&fit_length(&c.audio, samples, Sampling::Eval))?;
                let mut video = c.frames;
                normalise_frames(&mut video, d.frame_size);
                bar.inc(1);
                Ok(ClipFeatures {
                    id: c.id,
                    audio,
                    video,
                    label: Some(c.label),
                })
            })
            .collect();
        bar.finish_and_clear();
        let mut set = FeatureSet {
            labels: Some(Vec::new()),
            ..FeatureSet::default()
        };
        for c in clips {
            set.push(c?);
        }
        Ok(set)
    };
    let mut train = make(Split::Train, "synthetic")?;
    let mut test = make(Split::Test, "synthetic")?;
    let norm = audio_stats(&train, d.n_mels * d.audio_frames)?;
    normalise_audio(&mut train, &norm);
    normalise_audio(&mut test, &norm);
    Ok(Dataset {
        name: "built-in synthetic".into(),
        train,
        test,
        classes: class_names(syn.n_classes),
        norm,
        confusable_pairs: confusable_pairs(syn.n_classes),
        skipped: Vec::new(),
    })
}

/// A dataset described by a JSON-lines manifest (a file, or a directory
/// holding `manifest.jsonl`).
pub fn from_manifest(path: &Path, cfg: &Config) -> Result<Dataset> {
    let manifest = Manifest::load(path)?;
    let d = &cfg.data;
    let mut features = FeatureConfig::new(d.n_mels, d.audio_frames, d.frames, d.frame_size);
    features.random_flip = false;
    let loader = ClipLoader::new(features)?;
    let mut skipped = Vec::new();
    let labelled = !manifest.classes.is_empty();
    let mut load = |split: Split, what: &str| -> Result<FeatureSet> {
        let clips: Vec<_> = manifest.split(split).collect();
        let bar = progress(clips.len(), what);
        let loaded: Vec<(String, Result<ClipFeatures>)> = clips
            .par_iter()
            .map(|c| {
                // In a labelled manifest an unlabelled clip can be neither
                // probed nor scored: a counted skip, not a silent loss of
                // every probe.
                let r = if labelled && c.label.is_none() {
                    Err(Error::data(
                        &manifest.path,
                        format!("line {}: no label while the manifest's other clips have one; label it, or remove every label to pretrain on unlabelled data", c.line),
                    ))
                } else {
                    loader.load(c, Sampling::Eval)
                };
                bar.inc(1);
                (c.id.clone(), r)
            })
            .collect();
        bar.finish_and_clear();
        let mut set = FeatureSet {
            labels: Some(Vec::new()),
            ..FeatureSet::default()
        };
        for (id, r) in loaded {
            match r {
                Ok(c) => set.push(c),
                Err(e) => skipped.push(format!("{id}: {e}")),
            }
        }
        Ok(set)
    };
    let mut train = load(Split::Train, "train clips")?;
    let mut test = load(Split::Test, "test clips")?;
    for (set, name) in [(&train, "train"), (&test, "test")] {
        if set.is_empty() {
            let listed = manifest
                .split(if name == "train" {
                    Split::Train
                } else {
                    Split::Test
                })
                .count();
            let why = if listed == 0 {
                format!("no line has \"split\": \"{name}\"; give some lines that split")
            } else {
                let first: Vec<&str> = skipped.iter().take(3).map(String::as_str).collect();
                format!(
                    "all {listed} {name} clips were unreadable (first: {}{})",
                    first.join("; "),
                    if skipped.len() > 3 { "; …" } else { "" }
                )
            };
            return Err(Error::data(
                &manifest.path,
                format!("no usable {name} clips: {why}"),
            ));
        }
    }
    let norm = audio_stats(&train, d.n_mels * d.audio_frames).map_err(|e| {
        Error::data(
            &manifest.path,
            format!(
                "the training clips' spectrograms cannot be normalised ({e}): every clip is silent or constant; check the audio files"
            ),
        )
    })?;
    normalise_audio(&mut train, &norm);
    normalise_audio(&mut test, &norm);
    if manifest.classes.is_empty() {
        train.labels = None;
        test.labels = None;
    }
    Ok(Dataset {
        name: manifest.path.display().to_string(),
        train,
        test,
        classes: manifest.classes.clone(),
        norm,
        confusable_pairs: Vec::new(),
        skipped,
    })
}
