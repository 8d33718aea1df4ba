//! The data input path (METHOD.md §1): manifest, WAV audio to normalised
//! log-mel spectrograms, and video frames to normalised RGB tensors.
//!
//! [`ClipLoader`] turns one [`Clip`] of a [`Manifest`] into [`ClipFeatures`]:
//! audio loaded at 16 kHz mono, padded/cropped to exactly the samples that
//! give `audio_frames` spectrogram frames, log-mel transformed (and
//! normalised when the config carries [`NormStats`]); `T` frames sampled
//! uniformly over the clip, resized to `S × S` and ImageNet-normalised.
//! [`Sampling`] selects the training behaviour (random crop, temporal jitter,
//! optional horizontal flip, all drawn from a seeded RNG) or the
//! deterministic evaluation behaviour (centre crop, segment centres).

pub mod audio;
pub mod augment;
pub mod cavmae;
pub mod frames;
pub mod manifest;
pub mod melspec;

use rand::Rng;
use serde::{Deserialize, Serialize};

pub use audio::{TARGET_SAMPLE_RATE, fit_length, load_wav};
pub use frames::{
    FrameSpec, IMAGENET_MEAN, IMAGENET_STD, flip_horizontal, frame_paths, load_frame,
    sample_indices,
};
pub use manifest::{Clip, MANIFEST_FILE_NAME, Manifest, Split};
pub use melspec::{LogMel, NormStats};

use crate::error::{Error, Result};
use crate::rng::SeededRng;

/// How random choices in loading are made.
#[derive(Debug)]
pub enum Sampling<'a> {
    /// Deterministic evaluation behaviour: centre crop, segment centres, no flip.
    Eval,
    /// Training behaviour: random crop, temporal jitter and flip drawn from the RNG.
    Train(&'a mut SeededRng),
}

impl Sampling<'_> {
    /// A shorter-lived copy, to pass on while keeping `self` usable.
    pub fn reborrow(&mut self) -> Sampling<'_> {
        match self {
            Sampling::Eval => Sampling::Eval,
            Sampling::Train(rng) => Sampling::Train(rng),
        }
    }
}

/// What one clip is turned into.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureConfig {
    /// Mel bands (64 tiny / 128 base).
    pub n_mels: usize,
    /// Fixed spectrogram length in frames (10 ms each); the audio is padded or
    /// cropped to `400 + (audio_frames − 1)·160` samples to get it.
    pub audio_frames: usize,
    /// Video frames per clip, `T`.
    pub frames_per_clip: usize,
    /// Side of the square frames, `S`.
    pub frame_size: usize,
    /// In training, mirror all frames of a clip left to right with probability ½.
    pub random_flip: bool,
    /// Dataset log-mel statistics; applied when present.
    pub norm: Option<NormStats>,
}

impl FeatureConfig {
    /// A config with training flips on and no normalisation statistics yet.
    pub fn new(
        n_mels: usize,
        audio_frames: usize,
        frames_per_clip: usize,
        frame_size: usize,
    ) -> Self {
        Self {
            n_mels,
            audio_frames,
            frames_per_clip,
            frame_size,
            random_flip: true,
            norm: None,
        }
    }

    /// Audio samples (at 16 kHz) a clip is fitted to.
    pub fn audio_samples(&self) -> usize {
        LogMel::samples_for_frames(self.audio_frames)
    }
}

/// The model inputs of one clip.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipFeatures {
    /// The clip's id.
    pub id: String,
    /// Log-mel spectrogram, row-major `[n_mels, audio_frames]`.
    pub audio: Vec<f32>,
    /// Frames, row-major `[T, 3, S, S]`.
    pub video: Vec<f32>,
    /// Class index, if labelled.
    pub label: Option<usize>,
}

/// Loads clips into [`ClipFeatures`] with a [`LogMel`] built once.
#[derive(Debug)]
pub struct ClipLoader {
    cfg: FeatureConfig,
    logmel: LogMel,
}

impl ClipLoader {
    /// A loader for `cfg`; errors on a zero size in the config.
    pub fn new(cfg: FeatureConfig) -> Result<Self> {
        for (name, v) in [
            ("audio_frames", cfg.audio_frames),
            ("frames_per_clip", cfg.frames_per_clip),
            ("frame_size", cfg.frame_size),
        ] {
            if v == 0 {
                return Err(Error::invalid(
                    "FeatureConfig",
                    format!("{name} must be at least 1"),
                ));
            }
        }
        let logmel = LogMel::new(cfg.n_mels)?;
        Ok(Self { cfg, logmel })
    }

    /// The loader's config.
    pub fn config(&self) -> &FeatureConfig {
        &self.cfg
    }

    /// Loads one clip. Errors name the file at fault; frame errors also name
    /// the clip id (e.g. a missing frame file).
    pub fn load(&self, clip: &Clip, mut sampling: Sampling<'_>) -> Result<ClipFeatures> {
        let cfg = &self.cfg;
        let wav = load_wav(&clip.audio)?;
        let fitted = fit_length(&wav, cfg.audio_samples(), sampling.reborrow());
        let mut audio = self.logmel.compute(&fitted)?;
        if let Some(norm) = &cfg.norm {
            norm.apply(&mut audio);
        }

        let in_clip = |e: Error| match e {
            Error::Data { path, detail } => Error::Data {
                path,
                detail: format!(
                    "clip \"{}\" (manifest line {}): {detail}",
                    clip.id, clip.line
                ),
            },
            other => other,
        };
        let paths = clip.frame_paths().map_err(in_clip)?;
        let picks = sample_indices(paths.len(), cfg.frames_per_clip, sampling.reborrow())?;
        let flip = match sampling {
            Sampling::Train(rng) if cfg.random_flip => rng.random_bool(0.5),
            _ => false,
        };
        let (s, plane) = (cfg.frame_size, 3 * cfg.frame_size * cfg.frame_size);
        let mut video = Vec::with_capacity(cfg.frames_per_clip * plane);
        for &i in &picks {
            let mut frame = load_frame(&paths[i], s).map_err(in_clip)?;
            if flip {
                flip_horizontal(&mut frame, s);
            }
            video.extend_from_slice(&frame);
        }
        Ok(ClipFeatures {
            id: clip.id.clone(),
            audio,
            video,
            label: clip.label,
        })
    }
}

/// Loads one clip with `cfg` (builds a [`ClipLoader`]; keep one loader to
/// load many clips).
pub fn load_clip(clip: &Clip, cfg: &FeatureConfig, sampling: Sampling<'_>) -> Result<ClipFeatures> {
    ClipLoader::new(cfg.clone())?.load(clip, sampling)
}
