//! Augmentations for SelfCL's two views of a clip (METHOD.md §4,
//! docs/METHOD-NOTES.md).
//!
//! Audio works on one log-mel spectrogram, row-major `[n_mels, frames]`
//! (the layout of [`crate::data::ClipFeatures::audio`]), in whatever units it
//! holds (raw `ln(mel)` or dataset-normalised): time shift, gain (additive in
//! the log domain), additive Gaussian noise, then SpecAugment time and
//! frequency masks. Video works on one clip of frames `[T, 3, S, S]` with
//! values in `[0, 1]`: temporal jitter, random resized crop (bilinear, back
//! to `S×S`), horizontal flip, then colour jitter (brightness, contrast,
//! saturation); the crop, flip and jitter parameters are drawn once per clip
//! so all frames move together. [`augment_video_normalised`] wraps it for
//! ImageNet-normalised frames.
//!
//! Every random choice comes from the caller's RNG, so a view is a pure
//! function of (input, config, RNG state). A transform whose strength is 0 is
//! skipped (bit-exact identity, and no numbers drawn for it).

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::frames::{IMAGENET_MEAN, IMAGENET_STD, flip_horizontal};
use crate::error::{Error, Result};

/// Strengths of every augmentation. `Default` gives moderate SelfCL views;
/// [`AugmentConfig::none`] turns everything off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Largest audio time shift as a fraction of the spectrogram's frames
    /// (`0..=1`); the shift is uniform in `[−k, k]` frames, `k = round(fraction·frames)`.
    pub time_shift: f32,
    /// Shift circularly (frames leaving one end re-enter at the other);
    /// otherwise the vacated frames are filled with the spectrogram's mean.
    pub time_shift_circular: bool,
    /// Largest gain, as an additive offset in the log domain (`ln` units of
    /// the input, or normalised units after normalisation): uniform in `[−g, g]`.
    pub gain: f32,
    /// Standard deviation of the additive Gaussian noise on the spectrogram.
    pub noise_std: f32,
    /// Number of SpecAugment time masks.
    pub time_masks: usize,
    /// Largest time-mask width in frames; each mask's width is uniform in `0..=width`.
    pub time_mask_width: usize,
    /// Number of SpecAugment frequency masks.
    pub freq_masks: usize,
    /// Largest frequency-mask width in mel bands; uniform in `0..=width`.
    pub freq_mask_width: usize,
    /// Largest temporal offset of the video in frames: frame `t` of the view
    /// is frame `clamp(t + o, 0, T − 1)`, `o` uniform in `[−j, j]` (so edge
    /// frames repeat).
    pub temporal_jitter: usize,
    /// Probability that a view frame (after the first) repeats its
    /// predecessor instead of advancing (a dropped frame).
    pub frame_repeat_prob: f32,
    /// Smallest area fraction of the random resized crop (`(0, 1]`; 1 with
    /// `crop_max_aspect = 1` keeps the whole frame).
    pub crop_min_scale: f32,
    /// Largest aspect ratio of the crop (`≥ 1`); the ratio is log-uniform in
    /// `[1/r, r]`.
    pub crop_max_aspect: f32,
    /// Probability of mirroring the clip left to right.
    pub flip_prob: f32,
    /// Brightness jitter: pixels are scaled by a factor uniform in `[1 − b, 1 + b]`.
    pub brightness: f32,
    /// Contrast jitter: each frame is blended with its mean grey level by a
    /// factor uniform in `[1 − c, 1 + c]`.
    pub contrast: f32,
    /// Saturation jitter: each pixel is blended with its own grey level by a
    /// factor uniform in `[1 − s, 1 + s]`.
    pub saturation: f32,
}

impl Default for AugmentConfig {
    /// Moderate views: ±10 % time shift, ±0.5 log gain, noise 0.05, two
    /// time masks up to 10 % of 100 frames and two frequency masks of up to
    /// 8 bands; ±1 frame jitter, 10 % frame repeats, crops of 35–100 % area
    /// with aspect up to 4:3, flips half the time, colour jitter 0.4/0.4/0.4.
    fn default() -> Self {
        AugmentConfig {
            time_shift: 0.1,
            time_shift_circular: false,
            gain: 0.5,
            noise_std: 0.05,
            time_masks: 2,
            time_mask_width: 10,
            freq_masks: 2,
            freq_mask_width: 8,
            temporal_jitter: 1,
            frame_repeat_prob: 0.1,
            crop_min_scale: 0.35,
            crop_max_aspect: 4.0 / 3.0,
            flip_prob: 0.5,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
        }
    }
}

impl AugmentConfig {
    /// Every augmentation off: both views equal the input.
    pub fn none() -> Self {
        AugmentConfig {
            time_shift: 0.0,
            time_shift_circular: false,
            gain: 0.0,
            noise_std: 0.0,
            time_masks: 0,
            time_mask_width: 0,
            freq_masks: 0,
            freq_mask_width: 0,
            temporal_jitter: 0,
            frame_repeat_prob: 0.0,
            crop_min_scale: 1.0,
            crop_max_aspect: 1.0,
            flip_prob: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
        }
    }

    /// Checks every knob's range; the error names the knob.
    pub fn validate(&self) -> Result<()> {
        let unit = [
            ("time_shift", self.time_shift),
            ("frame_repeat_prob", self.frame_repeat_prob),
            ("flip_prob", self.flip_prob),
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ];
        for (name, v) in unit {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::invalid(
                    "AugmentConfig",
                    format!("{name} = {v} must lie in [0, 1]"),
                ));
            }
        }
        for (name, v) in [("gain", self.gain), ("noise_std", self.noise_std)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::invalid(
                    "AugmentConfig",
                    format!("{name} = {v} must be finite and at least 0"),
                ));
            }
        }
        if !(self.crop_min_scale > 0.0 && self.crop_min_scale <= 1.0) {
            return Err(Error::invalid(
                "AugmentConfig",
                format!(
                    "crop_min_scale = {} must lie in (0, 1]",
                    self.crop_min_scale
                ),
            ));
        }
        if !(self.crop_max_aspect >= 1.0 && self.crop_max_aspect.is_finite()) {
            return Err(Error::invalid(
                "AugmentConfig",
                format!(
                    "crop_max_aspect = {} must be finite and at least 1",
                    self.crop_max_aspect
                ),
            ));
        }
        Ok(())
    }
}

fn check_len(op: &'static str, what: &str, len: usize, want: usize) -> Result<()> {
    if len != want || want == 0 {
        return Err(Error::shape(
            op,
            format!("{what} holds {len} values, expected a non-empty {want}"),
        ));
    }
    Ok(())
}

/// Mean of a slice (accumulated in f64).
fn mean(x: &[f32]) -> f32 {
    (x.iter().map(|&v| f64::from(v)).sum::<f64>() / x.len().max(1) as f64) as f32
}

// ---------------------------------------------------------------- audio --

/// Shifts every mel row of `spec [n_mels, frames]` by `shift` frames (later
/// in time when positive): circularly, or filling vacated frames with `fill`.
pub fn time_shift(spec: &mut [f32], frames: usize, shift: isize, circular: bool, fill: f32) {
    if frames == 0 {
        return;
    }
    let k = shift.unsigned_abs().min(frames);
    for row in spec.chunks_exact_mut(frames) {
        match (circular, shift >= 0) {
            (true, true) => row.rotate_right(k % frames),
            (true, false) => row.rotate_left(k % frames),
            (false, true) => {
                row.copy_within(..frames - k, k);
                row[..k].fill(fill);
            }
            (false, false) => {
                row.copy_within(k.., 0);
                row[frames - k..].fill(fill);
            }
        }
    }
}

/// Sets frames `start..start + width` of every mel row of `spec [n_mels, frames]` to `fill`.
pub fn time_mask(spec: &mut [f32], frames: usize, start: usize, width: usize, fill: f32) {
    let end = (start + width).min(frames);
    for row in spec.chunks_exact_mut(frames.max(1)) {
        row[start.min(end)..end].fill(fill);
    }
}

/// Sets mel bands `start..start + width` of `spec [n_mels, frames]` to `fill`.
pub fn freq_mask(spec: &mut [f32], frames: usize, start: usize, width: usize, fill: f32) {
    let n_mels = spec.len() / frames.max(1);
    let end = (start + width).min(n_mels);
    spec[start.min(end) * frames..end * frames].fill(fill);
}

/// A mask of width uniform in `0..=max_width` (at most `extent`) at a
/// uniform start: `(start, width)`.
fn draw_mask<R: Rng + ?Sized>(rng: &mut R, extent: usize, max_width: usize) -> (usize, usize) {
    let width = rng.random_range(0..=max_width.min(extent));
    let start = rng.random_range(0..=extent - width);
    (start, width)
}

/// Augments one log-mel spectrogram `spec [n_mels, frames]` in place: time
/// shift, gain, noise, then `time_masks` time masks and `freq_masks`
/// frequency masks filled with the spectrogram's mean after gain and noise.
pub fn augment_audio<R: Rng + ?Sized>(
    cfg: &AugmentConfig,
    spec: &mut [f32],
    n_mels: usize,
    frames: usize,
    rng: &mut R,
) -> Result<()> {
    cfg.validate()?;
    check_len("augment_audio", "spectrogram", spec.len(), n_mels * frames)?;
    let k = (cfg.time_shift * frames as f32).round() as i64;
    if k > 0 {
        let shift = rng.random_range(-k..=k) as isize;
        let fill = mean(spec);
        time_shift(spec, frames, shift, cfg.time_shift_circular, fill);
    }
    if cfg.gain > 0.0 {
        let g = rng.random_range(-cfg.gain..=cfg.gain);
        spec.iter_mut().for_each(|v| *v += g);
    }
    if cfg.noise_std > 0.0 {
        for v in spec.iter_mut() {
            let z: f32 = StandardNormal.sample(rng);
            *v += cfg.noise_std * z;
        }
    }
    if (cfg.time_masks > 0 && cfg.time_mask_width > 0)
        || (cfg.freq_masks > 0 && cfg.freq_mask_width > 0)
    {
        let fill = mean(spec);
        if cfg.time_mask_width > 0 {
            for _ in 0..cfg.time_masks {
                let (start, width) = draw_mask(rng, frames, cfg.time_mask_width);
                time_mask(spec, frames, start, width, fill);
            }
        }
        if cfg.freq_mask_width > 0 {
            for _ in 0..cfg.freq_masks {
                let (start, width) = draw_mask(rng, n_mels, cfg.freq_mask_width);
                freq_mask(spec, frames, start, width, fill);
            }
        }
    }
    Ok(())
}

/// [`augment_audio`] on each spectrogram of a batch `[N, n_mels, frames]`.
pub fn augment_audio_batch<R: Rng + ?Sized>(
    cfg: &AugmentConfig,
    batch: &mut [f32],
    n_mels: usize,
    frames: usize,
    rng: &mut R,
) -> Result<()> {
    let per = n_mels * frames;
    if per == 0 || !batch.len().is_multiple_of(per) {
        return Err(Error::shape(
            "augment_audio_batch",
            format!(
                "batch holds {} values, not a multiple of n_mels·frames = {n_mels}·{frames}",
                batch.len()
            ),
        ));
    }
    for spec in batch.chunks_exact_mut(per) {
        augment_audio(cfg, spec, n_mels, frames, rng)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- video --

/// Re-samples the frames of `clip [T, 3, S, S]` in time: view frame `t` is
/// source frame `picks[t]` (`picks.len() == T`, every entry `< T`).
pub fn reorder_frames(clip: &mut [f32], picks: &[usize]) {
    let t = picks.len();
    if t == 0 {
        return;
    }
    let per = clip.len() / t;
    let src = clip.to_vec();
    for (dst, &p) in clip.chunks_exact_mut(per).zip(picks) {
        dst.copy_from_slice(&src[p * per..(p + 1) * per]);
    }
}

/// Mirrors every frame of `clip [T, 3, S, S]` left to right.
pub fn flip_video(clip: &mut [f32], size: usize) {
    for frame in clip.chunks_exact_mut(3 * size * size) {
        flip_horizontal(frame, size);
    }
}

/// A crop box in source pixel units: left, top, width, height.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CropBox {
    /// Left edge (pixels from the frame's left).
    pub x0: f32,
    /// Top edge (pixels from the frame's top).
    pub y0: f32,
    /// Width in pixels (`0 < w ≤ S`).
    pub w: f32,
    /// Height in pixels (`0 < h ≤ S`).
    pub h: f32,
}

/// Crops `crop` from every `[3, S, S]` frame of `clip` and resizes it back
/// to `S×S` with bilinear interpolation (pixel centres aligned, edges
/// clamped). The full box `(0, 0, S, S)` is the identity.
pub fn resized_crop(clip: &mut [f32], size: usize, crop: CropBox) {
    let s = size;
    if s == 0 {
        return;
    }
    // Source coordinate and the two neighbours with their weights, per output index.
    let axis = |start: f32, len: f32| -> Vec<(usize, usize, f32)> {
        (0..s)
            .map(|o| {
                let x =
                    (start + (o as f32 + 0.5) * len / s as f32 - 0.5).clamp(0.0, (s - 1) as f32);
                let i0 = x.floor() as usize;
                let i1 = (i0 + 1).min(s - 1);
                (i0, i1, x - i0 as f32)
            })
            .collect()
    };
    let xs = axis(crop.x0, crop.w);
    let ys = axis(crop.y0, crop.h);
    let mut src = vec![0.0f32; s * s];
    for plane in clip.chunks_exact_mut(s * s) {
        src.copy_from_slice(plane);
        for (row, &(y0, y1, fy)) in plane.chunks_exact_mut(s).zip(&ys) {
            let (r0, r1) = (&src[y0 * s..(y0 + 1) * s], &src[y1 * s..(y1 + 1) * s]);
            for (out, &(x0, x1, fx)) in row.iter_mut().zip(&xs) {
                let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
                let bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
                *out = top + (bottom - top) * fy;
            }
        }
    }
}

/// ITU-R BT.601 luma weights of R, G, B.
const LUMA: [f32; 3] = [0.299, 0.587, 0.114];

/// Scales every value of `clip` by `factor`, clamped to `[0, 1]`.
pub fn adjust_brightness(clip: &mut [f32], factor: f32) {
    clip.iter_mut()
        .for_each(|v| *v = (*v * factor).clamp(0.0, 1.0));
}

/// Blends every `[3, S, S]` frame with its mean grey level:
/// `m + factor·(x − m)`, clamped to `[0, 1]`.
pub fn adjust_contrast(clip: &mut [f32], size: usize, factor: f32) {
    let plane = size * size;
    for frame in clip.chunks_exact_mut(3 * plane) {
        let m: f32 = frame
            .chunks_exact(plane)
            .zip(LUMA)
            .map(|(ch, w)| w * mean(ch))
            .sum();
        frame
            .iter_mut()
            .for_each(|v| *v = (m + factor * (*v - m)).clamp(0.0, 1.0));
    }
}

/// Blends every pixel with its own grey level: `g + factor·(x − g)`,
/// clamped to `[0, 1]` (0 gives greyscale).
pub fn adjust_saturation(clip: &mut [f32], size: usize, factor: f32) {
    let plane = size * size;
    for frame in clip.chunks_exact_mut(3 * plane) {
        let (r, rest) = frame.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
            let grey = LUMA[0] * *r + LUMA[1] * *g + LUMA[2] * *b;
            for v in [r, g, b] {
                *v = (grey + factor * (*v - grey)).clamp(0.0, 1.0);
            }
        }
    }
}

/// Draws a random resized crop of a `size×size` frame.
fn draw_crop<R: Rng + ?Sized>(rng: &mut R, cfg: &AugmentConfig, size: usize) -> CropBox {
    let s = size as f32;
    let area = rng.random_range(cfg.crop_min_scale..=1.0);
    let log_r = cfg.crop_max_aspect.ln();
    let ratio = rng.random_range(-log_r..=log_r).exp();
    let w = (s * (area * ratio).sqrt()).min(s);
    let h = (s * (area / ratio).sqrt()).min(s);
    let x0 = rng.random_range(0.0..=s - w);
    let y0 = rng.random_range(0.0..=s - h);
    CropBox { x0, y0, w, h }
}

/// A factor uniform in `[1 − strength, 1 + strength]`.
fn draw_factor<R: Rng + ?Sized>(rng: &mut R, strength: f32) -> f32 {
    rng.random_range(1.0 - strength..=1.0 + strength)
}

/// Augments one clip of frames `clip [T, 3, S, S]` (values in `[0, 1]`) in
/// place: temporal jitter and frame repeats, random resized crop, flip,
/// then brightness, contrast and saturation jitter. Values stay in `[0, 1]`.
pub fn augment_video<R: Rng + ?Sized>(
    cfg: &AugmentConfig,
    clip: &mut [f32],
    t: usize,
    size: usize,
    rng: &mut R,
) -> Result<()> {
    cfg.validate()?;
    check_len("augment_video", "clip", clip.len(), t * 3 * size * size)?;
    if cfg.temporal_jitter > 0 || cfg.frame_repeat_prob > 0.0 {
        let j = cfg.temporal_jitter as i64;
        let offset = if j > 0 {
            rng.random_range(-j..=j) as isize
        } else {
            0
        };
        let last = t as isize - 1;
        let mut picks: Vec<usize> = (0..t as isize)
            .map(|i| (i + offset).clamp(0, last) as usize)
            .collect();
        if cfg.frame_repeat_prob > 0.0 {
            for i in 1..t {
                if rng.random_bool(f64::from(cfg.frame_repeat_prob)) {
                    picks[i] = picks[i - 1];
                }
            }
        }
        reorder_frames(clip, &picks);
    }
    if cfg.crop_min_scale < 1.0 || cfg.crop_max_aspect > 1.0 {
        let crop = draw_crop(rng, cfg, size);
        resized_crop(clip, size, crop);
    }
    if cfg.flip_prob > 0.0 && rng.random_bool(f64::from(cfg.flip_prob)) {
        flip_video(clip, size);
    }
    if cfg.brightness > 0.0 {
        let f = draw_factor(rng, cfg.brightness);
        adjust_brightness(clip, f);
    }
    if cfg.contrast > 0.0 {
        let f = draw_factor(rng, cfg.contrast);
        adjust_contrast(clip, size, f);
    }
    if cfg.saturation > 0.0 {
        let f = draw_factor(rng, cfg.saturation);
        adjust_saturation(clip, size, f);
    }
    Ok(())
}

/// [`augment_video`] for ImageNet-normalised frames (the layout the model
/// takes, see [`IMAGENET_MEAN`]): un-normalises to `[0, 1]` (clamping),
/// augments, and normalises again.
pub fn augment_video_normalised<R: Rng + ?Sized>(
    cfg: &AugmentConfig,
    clip: &mut [f32],
    t: usize,
    size: usize,
    rng: &mut R,
) -> Result<()> {
    cfg.validate()?;
    check_len(
        "augment_video_normalised",
        "clip",
        clip.len(),
        t * 3 * size * size,
    )?;
    let plane = size * size;
    let per_channel = |clip: &mut [f32], f: &dyn Fn(f32, usize) -> f32| {
        for frame in clip.chunks_exact_mut(3 * plane) {
            for (c, ch) in frame.chunks_exact_mut(plane).enumerate() {
                ch.iter_mut().for_each(|v| *v = f(*v, c));
            }
        }
    };
    per_channel(clip, &|v, c| {
        (v * IMAGENET_STD[c] + IMAGENET_MEAN[c]).clamp(0.0, 1.0)
    });
    augment_video(cfg, clip, t, size, rng)?;
    per_channel(clip, &|v, c| (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c]);
    Ok(())
}
