//! The built-in synthetic dataset: short audio-visual clips of "activities".
//!
//! Each class is a visual motion of an object together with a sound. Classes
//! come in confusable pairs: in one modality the two members differ only
//! subtly (a round vs a square object; a steady vs a vibrato pitch), in the
//! other they differ clearly. A single modality therefore confuses the pair
//! where its cue is subtle, and because the subtle cue is predictable from the
//! other modality, audio-visual pretraining has a reason to learn it. Every clip draws its own rhythm (rate and phase): the object's
//! motion and the sound's pulses follow it together, so an audio clip's own
//! video is findable beyond its class. Nuisances vary per clip: position,
//! size, colour, background clutter and pixel noise; pitch, loudness and
//! background noise. Generation is deterministic from the seed, the split,
//! the class and the clip index, so any clip can be regenerated alone.

use std::f32::consts::PI;

use rand::Rng;
use rayon::prelude::*;

use crate::data::Split;
use crate::error::{Error, Result};
use crate::rng::{SeededRng, seeded};

/// Size and shape of the built-in dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticConfig {
    /// Number of classes; even, arranged as `n_classes / 2` confusable pairs (at most 10 pairs).
    pub n_classes: usize,
    /// Training clips per class.
    pub train_per_class: usize,
    /// Test clips per class.
    pub test_per_class: usize,
    /// Clip length in seconds.
    pub duration_s: f32,
    /// Audio sample rate (Hz).
    pub sample_rate: u32,
    /// Video frames per clip.
    pub frames: usize,
    /// Frame side in pixels.
    pub frame_size: usize,
    /// Seed of the whole dataset.
    pub seed: u64,
}

impl Default for SyntheticConfig {
    /// 10 classes (5 pairs), 120 training and 200 test clips each, 1 s clips at
    /// 16 kHz with 4 frames of 32×32: the `tiny` preset's data.
    fn default() -> Self {
        SyntheticConfig {
            n_classes: 10,
            train_per_class: 120,
            test_per_class: 200,
            duration_s: 1.0,
            sample_rate: 16_000,
            frames: 4,
            frame_size: 32,
            seed: 0,
        }
    }
}

/// One generated clip.
#[derive(Clone, Debug)]
pub struct SyntheticClip {
    /// Unique id, e.g. `train-c03-0017`.
    pub id: String,
    /// Mono audio at the configured rate, in [-1, 1].
    pub audio: Vec<f32>,
    /// RGB frames in [0, 1], layout `[T, 3, S, S]`.
    pub frames: Vec<f32>,
    /// Class index.
    pub label: usize,
    /// The clip's rhythm in Hz (shared by motion and sound).
    pub rate_hz: f32,
    /// The rhythm's phase in radians.
    pub phase: f32,
}

/// How the object moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Motion {
    Horizontal,
    Vertical,
    Orbit,
    Pulse,
    Diagonal,
}

/// What the sound is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sound {
    Harmonic,
    NoiseBurst,
    Chirp,
    OddHarmonic,
    FmTone,
}

/// One class: motion, square (else round) object, sound, vibrato (else steady pitch).
type ClassSpec = (Motion, bool, Sound, bool);

/// The classes, two by two: pairs 0, 2, 4 differ subtly in the picture
/// (round vs square) and clearly in the sound; pairs 1 and 3 differ subtly in
/// the sound (steady vs vibrato) and clearly in the motion.
const CLASSES: [ClassSpec; 10] = [
    (Motion::Horizontal, false, Sound::Harmonic, false),
    (Motion::Horizontal, true, Sound::NoiseBurst, false),
    (Motion::Vertical, false, Sound::Chirp, false),
    (Motion::Orbit, false, Sound::Chirp, true),
    (Motion::Pulse, false, Sound::OddHarmonic, false),
    (Motion::Pulse, true, Sound::FmTone, false),
    (Motion::Diagonal, false, Sound::Harmonic, false),
    (Motion::Vertical, false, Sound::Harmonic, true),
    (Motion::Orbit, true, Sound::NoiseBurst, false),
    (Motion::Orbit, false, Sound::FmTone, false),
];

/// Sub-frame samples of the exposure window (motion blur).
const EXPOSURE_SAMPLES: usize = 9;

/// The largest number of classes the built-in dataset has.
pub const MAX_CLASSES: usize = CLASSES.len();

/// Human-readable class names, e.g. `orbit-square-noise-burst`.
pub fn class_names(n_classes: usize) -> Vec<String> {
    CLASSES
        .iter()
        .take(n_classes)
        .map(|&(motion, square, sound, vibrato)| {
            let motion = format!("{motion:?}").to_lowercase();
            let shape = if square { "square" } else { "round" };
            let sound = match sound {
                Sound::Harmonic => "harmonic",
                Sound::NoiseBurst => "noise-burst",
                Sound::Chirp => "chirp",
                Sound::OddHarmonic => "odd-harmonic",
                Sound::FmTone => "fm-tone",
            };
            let pitch = if vibrato { "-vibrato" } else { "" };
            format!("{motion}-{shape}-{sound}{pitch}")
        })
        .collect()
}

/// The loudness envelope of a clip's sound at time `t` (seconds): loudest
/// when the object is at its motion's positive extreme, never silent.
pub fn sound_envelope(t: f32, rate_hz: f32, phase: f32) -> f32 {
    0.15 + 0.85 * (0.5 + 0.5 * (2.0 * PI * rate_hz * t + phase).sin()).powi(2)
}

/// The confusable class pairs `(2q, 2q+1)`.
pub fn confusable_pairs(n_classes: usize) -> Vec<(usize, usize)> {
    (0..n_classes / 2).map(|q| (2 * q, 2 * q + 1)).collect()
}

impl SyntheticConfig {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<()> {
        let bad = |d: String| Err(Error::invalid("synthetic dataset", d));
        if self.n_classes < 2 || !self.n_classes.is_multiple_of(2) || self.n_classes > MAX_CLASSES {
            return bad(format!(
                "n_classes must be even, 2..={MAX_CLASSES}; got {}",
                self.n_classes
            ));
        }
        if self.frames == 0 || self.frame_size < 8 {
            return bad(format!(
                "need at least 1 frame of at least 8×8; got {} of {}",
                self.frames, self.frame_size
            ));
        }
        if !(self.duration_s > 0.05 && self.duration_s <= 30.0) || self.sample_rate < 4000 {
            return bad(format!(
                "duration {} s at {} Hz is out of range (0.05..=30 s, ≥ 4 kHz)",
                self.duration_s, self.sample_rate
            ));
        }
        Ok(())
    }

    /// Number of clips per class in `split`.
    pub fn per_class(&self, split: Split) -> usize {
        match split {
            Split::Train => self.train_per_class,
            Split::Test => self.test_per_class,
        }
    }

    /// Generates every clip of `split`, class-interleaved (clip i has class i mod K).
    pub fn generate(&self, split: Split) -> Result<Vec<SyntheticClip>> {
        self.validate()?;
        let n = self.per_class(split) * self.n_classes;
        Ok((0..n)
            .into_par_iter()
            .map(|i| self.clip(split, i % self.n_classes, i / self.n_classes))
            .collect())
    }

    /// Generates clip `index` of class `class` in `split` (deterministic).
    pub fn clip(&self, split: Split, class: usize, index: usize) -> SyntheticClip {
        let split_tag: u64 = match split {
            Split::Train => 1,
            Split::Test => 2,
        };
        let key = self
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(split_tag << 56)
            .wrapping_add((class as u64) << 40)
            .wrapping_add(index as u64);
        let mut rng = seeded(key);
        let rate_hz = rng.random_range(0.6f32..1.4);
        let phase = rng.random_range(0.0f32..2.0 * PI);
        let frames = self.render_video(&mut rng, class, rate_hz, phase);
        let audio = self.render_audio(&mut rng, class, rate_hz, phase);
        let tag = match split {
            Split::Train => "train",
            Split::Test => "test",
        };
        SyntheticClip {
            id: format!("{tag}-c{class:02}-{index:04}"),
            audio,
            frames,
            label: class,
            rate_hz,
            phase,
        }
    }

    /// The object's offset along its motion at time `t` (a value in [-1, 1]).
    fn rhythm(t: f32, rate: f32, phase: f32) -> f32 {
        (2.0 * PI * rate * t + phase).sin()
    }

    fn render_video(&self, rng: &mut SeededRng, class: usize, rate: f32, phase: f32) -> Vec<f32> {
        let (motion, square, _, _) = CLASSES[class];
        let s = self.frame_size;
        let sf = s as f32;
        let radius = rng.random_range(0.14f32..0.20) * sf;
        let amp = rng.random_range(0.20f32..0.28) * sf;
        let cx0 = rng.random_range(0.35f32..0.65) * sf;
        let cy0 = rng.random_range(0.35f32..0.65) * sf;
        // A bright object of random hue on a darker background: the contrast
        // polarity is fixed, the colours are nuisances.
        let colour: [f32; 3] = [
            rng.random_range(0.6f32..1.0),
            rng.random_range(0.6f32..1.0),
            rng.random_range(0.6f32..1.0),
        ];
        let background: [f32; 3] = {
            let g = rng.random_range(0.05f32..0.3);
            [
                g,
                (g + rng.random_range(-0.05f32..0.05)).max(0.0),
                (g + rng.random_range(-0.05f32..0.05)).max(0.0),
            ]
        };
        let noise = rng.random_range(0.01f32..0.05);
        // Static clutter: a few random rectangles.
        let clutter: Vec<([f32; 4], [f32; 3])> = (0..rng.random_range(1..4))
            .map(|_| {
                let w = rng.random_range(0.06f32..0.18) * sf;
                let h = rng.random_range(0.06f32..0.18) * sf;
                let x = rng.random_range(0.0..sf - w);
                let y = rng.random_range(0.0..sf - h);
                (
                    [x, y, x + w, y + h],
                    [
                        rng.random_range(0.2f32..0.5),
                        rng.random_range(0.2f32..0.5),
                        rng.random_range(0.2f32..0.5),
                    ],
                )
            })
            .collect();
        let t_count = self.frames;
        let mut out = vec![0.0f32; t_count * 3 * s * s];
        // Each frame integrates the object over an exposure window, so the
        // motion also shows within a frame as a blur streak along its path.
        let pose = |t: f32| -> (f32, f32, f32) {
            let r = Self::rhythm(t, rate, phase);
            let c = (2.0 * PI * rate * t + phase).cos();
            match motion {
                Motion::Horizontal => (cx0 + amp * r, cy0, radius),
                Motion::Vertical => (cx0, cy0 + amp * r, radius),
                Motion::Orbit => (cx0 + amp * r, cy0 + amp * c, radius),
                Motion::Pulse => (cx0, cy0, radius * (1.0 + 0.6 * r)),
                Motion::Diagonal => (cx0 + 0.7 * amp * r, cy0 + 0.7 * amp * r, radius),
            }
        };
        let exposure = 0.6 * self.duration_s / t_count as f32;
        for (k, frame) in out.chunks_exact_mut(3 * s * s).enumerate() {
            let t = (k as f32 + 0.5) / t_count as f32 * self.duration_s;
            let poses: Vec<(f32, f32, f32)> = (0..EXPOSURE_SAMPLES)
                .map(|j| pose(t + exposure * (j as f32 / (EXPOSURE_SAMPLES - 1) as f32 - 0.5)))
                .collect();
            for y in 0..s {
                for x in 0..s {
                    let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                    let mut rgb = background;
                    for (rect, col) in &clutter {
                        if px >= rect[0] && px < rect[2] && py >= rect[1] && py < rect[3] {
                            rgb = *col;
                        }
                    }
                    let covered = poses
                        .iter()
                        .filter(|&&(cx, cy, rad)| {
                            if square {
                                (px - cx).abs() <= rad * 0.886 && (py - cy).abs() <= rad * 0.886
                            } else {
                                (px - cx).powi(2) + (py - cy).powi(2) <= rad * rad
                            }
                        })
                        .count() as f32
                        / EXPOSURE_SAMPLES as f32;
                    for ch in 0..3 {
                        let v = rgb[ch] * (1.0 - covered)
                            + colour[ch] * covered
                            + noise * rng.random_range(-1.0f32..1.0);
                        frame[ch * s * s + y * s + x] = v.clamp(0.0, 1.0);
                    }
                }
            }
        }
        out
    }

    fn render_audio(&self, rng: &mut SeededRng, class: usize, rate: f32, phase: f32) -> Vec<f32> {
        let (_, _, sound, vibrato) = CLASSES[class];
        let sr = self.sample_rate as f32;
        let n = (self.duration_s * sr).round() as usize;
        let f0 = 180.0 * 2f32.powf(rng.random_range(0.0f32..2.0));
        let gain = rng.random_range(0.25f32..0.9);
        let noise = rng.random_range(0.005f32..0.05);
        let mut audio = vec![0.0f32; n];
        let mut carrier_phase = 0.0f32;
        for (i, a) in audio.iter_mut().enumerate() {
            let t = i as f32 / sr;
            // Pulses at the motion's peaks: the sound follows the picture.
            let env = sound_envelope(t, rate, phase);
            let f = if vibrato {
                f0 * (1.0 + 0.04 * (2.0 * PI * 7.0 * t).sin())
            } else {
                f0
            };
            let inst = match sound {
                Sound::Chirp => f * (1.0 + 0.8 * (t * rate).fract()),
                _ => f,
            };
            carrier_phase = (carrier_phase + 2.0 * PI * inst / sr) % (2.0 * PI);
            let p = carrier_phase;
            let carrier = match sound {
                Sound::Harmonic => {
                    (1..=5)
                        .map(|h| (h as f32 * p).sin() / h as f32)
                        .sum::<f32>()
                        * 0.6
                }
                Sound::NoiseBurst => rng.random_range(-1.0f32..1.0) * (0.5 + 0.5 * (3.0 * p).sin()),
                Sound::Chirp => p.sin(),
                Sound::OddHarmonic => {
                    (0..4)
                        .map(|h| ((2 * h + 1) as f32 * p).sin() / (2 * h + 1) as f32)
                        .sum::<f32>()
                        * 0.8
                }
                Sound::FmTone => (p + 2.0 * (0.5 * p).sin()).sin(),
            };
            *a = (gain * env * carrier + noise * rng.random_range(-1.0f32..1.0)).clamp(-1.0, 1.0);
        }
        audio
    }
}
