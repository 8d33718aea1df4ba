//! Log-mel spectrograms (METHOD.md §1): 25 ms Hann window, 10 ms hop,
//! 512-point FFT, HTK-scale triangular mel filters from 0 Hz to 8 kHz,
//! `ln(mel + 1e-6)`; and the per-dataset scalar normalisation.

use std::sync::Arc;

use rayon::prelude::*;
use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Sample rate the spectrogram expects (Hz).
pub const SAMPLE_RATE: u32 = 16_000;
/// Analysis window length in samples (25 ms at 16 kHz).
pub const WIN_LENGTH: usize = 400;
/// Hop between frames in samples (10 ms at 16 kHz).
pub const HOP_LENGTH: usize = 160;
/// FFT length (the window is zero-padded to it).
pub const N_FFT: usize = 512;
/// Highest filterbank frequency (Hz), the Nyquist frequency at 16 kHz.
pub const F_MAX: f64 = 8000.0;
/// Added to the mel energies before the logarithm.
pub const LOG_EPS: f32 = 1e-6;

/// Number of rFFT bins (`N_FFT / 2 + 1`).
const N_BINS: usize = N_FFT / 2 + 1;
/// Inputs with at least this many frames are computed in parallel.
const PAR_MIN_FRAMES: usize = 128;
/// Frames per rayon task.
const FRAMES_PER_TASK: usize = 32;

/// HTK mel of a frequency in Hz.
fn hz_to_mel(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

/// Frequency in Hz of an HTK mel value.
fn mel_to_hz(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

/// One triangular filter, stored as its non-zero span of FFT bins.
#[derive(Clone, Debug)]
struct MelFilter {
    /// First FFT bin with a non-zero weight.
    start: usize,
    /// Weights of bins `start..start + weights.len()`.
    weights: Vec<f32>,
}

/// A log-mel spectrogram extractor with its window, filterbank and FFT plan
/// precomputed.
///
/// Framing: frame `t` covers samples `t·160 .. t·160 + 400` (no centre
/// padding), so an input of `len ≥ 400` samples gives
/// `1 + (len − 400) / 160` frames and a tail shorter than a hop is dropped.
/// An input shorter than one window is zero-padded to one window (one
/// frame). Each frame is multiplied by a periodic Hann window of 400 samples,
/// zero-padded to 512 and transformed; the power spectrum `|X_k|²` is
/// projected on `n_mels` triangular filters whose corners are equally spaced
/// on the HTK mel scale (`2595·log10(1 + f/700)`) from 0 Hz to 8 kHz, with
/// weights evaluated at the bin frequencies `k·16000/512` (peak 1, no area
/// normalisation). A filter too narrow to contain any bin (with `n_mels =
/// 128` the lowest one, 0–28 Hz, falls between bins 0 and 1) instead takes
/// weight 1 on the bin nearest its centre, so no output row is constant.
pub struct LogMel {
    n_mels: usize,
    window: Vec<f32>,
    filters: Vec<MelFilter>,
    /// `(low, centre, high)` corner frequencies of every filter, in Hz.
    bands: Vec<(f32, f32, f32)>,
    fft: Arc<dyn RealToComplex<f32>>,
}

impl std::fmt::Debug for LogMel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMel")
            .field("n_mels", &self.n_mels)
            .field("sample_rate", &SAMPLE_RATE)
            .field("win_length", &WIN_LENGTH)
            .field("hop_length", &HOP_LENGTH)
            .field("n_fft", &N_FFT)
            .finish()
    }
}

/// Per-thread buffers for computing frames.
struct Scratch {
    input: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    fft: Vec<Complex<f32>>,
    power: Vec<f32>,
}

impl LogMel {
    /// An extractor with `n_mels` mel bands (`1 ..= 256`).
    pub fn new(n_mels: usize) -> Result<Self> {
        if n_mels == 0 || n_mels > N_BINS - 1 {
            return Err(Error::invalid(
                "LogMel::new",
                format!("n_mels must be between 1 and {}, got {n_mels}", N_BINS - 1),
            ));
        }
        let window: Vec<f32> = (0..WIN_LENGTH)
            .map(|i| {
                let phase = 2.0 * std::f64::consts::PI * i as f64 / WIN_LENGTH as f64;
                (0.5 - 0.5 * phase.cos()) as f32
            })
            .collect();
        let mel_max = hz_to_mel(F_MAX);
        let corners: Vec<f64> = (0..n_mels + 2)
            .map(|i| mel_to_hz(mel_max * i as f64 / (n_mels + 1) as f64))
            .collect();
        let bin_hz = f64::from(SAMPLE_RATE) / N_FFT as f64;
        let mut filters = Vec::with_capacity(n_mels);
        let mut bands = Vec::with_capacity(n_mels);
        for m in 0..n_mels {
            let (lo, c, hi) = (corners[m], corners[m + 1], corners[m + 2]);
            bands.push((lo as f32, c as f32, hi as f32));
            let weight = |k: usize| {
                let f = k as f64 * bin_hz;
                let up = (f - lo) / (c - lo);
                let down = (hi - f) / (hi - c);
                up.min(down).max(0.0)
            };
            let nonzero: Vec<usize> = (0..N_BINS).filter(|&k| weight(k) > 0.0).collect();
            let filter = match (nonzero.first(), nonzero.last()) {
                (Some(&first), Some(&last)) => MelFilter {
                    start: first,
                    weights: (first..=last).map(|k| weight(k) as f32).collect(),
                },
                _ => MelFilter {
                    start: ((c / bin_hz).round() as usize).min(N_BINS - 1),
                    weights: vec![1.0],
                },
            };
            filters.push(filter);
        }
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        Ok(Self {
            n_mels,
            window,
            filters,
            bands,
            fft,
        })
    }

    /// Number of mel bands (rows of the output).
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// `(low, centre, high)` corner frequencies in Hz of mel band `m`
    /// (`m < n_mels`, otherwise `None`).
    pub fn band_hz(&self, m: usize) -> Option<(f32, f32, f32)> {
        self.bands.get(m).copied()
    }

    /// Frames produced for an input of `len` samples: 0 for an empty input,
    /// 1 for `0 < len < 400`, else `1 + (len − 400) / 160`.
    pub fn num_frames(len: usize) -> usize {
        match len {
            0 => 0,
            l if l < WIN_LENGTH => 1,
            l => 1 + (l - WIN_LENGTH) / HOP_LENGTH,
        }
    }

    /// The number of samples that gives exactly `frames` frames (≥ 1) with
    /// nothing dropped: `400 + (frames − 1)·160`.
    pub fn samples_for_frames(frames: usize) -> usize {
        WIN_LENGTH + frames.saturating_sub(1) * HOP_LENGTH
    }

    fn scratch(&self) -> Scratch {
        Scratch {
            input: self.fft.make_input_vec(),
            spectrum: self.fft.make_output_vec(),
            fft: self.fft.make_scratch_vec(),
            power: vec![0.0; N_BINS],
        }
    }

    /// Fills `s.power` with the power spectrum of `frame` (at most 400
    /// samples; shorter frames are zero-padded).
    fn frame_power(&self, frame: &[f32], s: &mut Scratch) -> Result<()> {
        s.input.fill(0.0);
        for ((dst, &x), &w) in s.input.iter_mut().zip(frame).zip(&self.window) {
            *dst = x * w;
        }
        self.fft
            .process_with_scratch(&mut s.input, &mut s.spectrum, &mut s.fft)
            .map_err(|e| Error::Backend {
                backend: "cpu".into(),
                detail: format!("log-mel FFT failed: {e}"),
            })?;
        for (p, c) in s.power.iter_mut().zip(&s.spectrum) {
            *p = c.norm_sqr();
        }
        Ok(())
    }

    /// The power spectrum `|X_k|²`, `k = 0..=256`, of one frame: the first
    /// 400 samples of `frame` (zero-padded if shorter) times the Hann window,
    /// zero-padded to 512.
    pub fn power_spectrum(&self, frame: &[f32]) -> Result<Vec<f32>> {
        let mut s = self.scratch();
        self.frame_power(frame, &mut s)?;
        Ok(s.power)
    }

    /// Log-mel energies of one frame into `out` (`n_mels` values).
    fn frame_logmel(&self, frame: &[f32], s: &mut Scratch, out: &mut [f32]) -> Result<()> {
        self.frame_power(frame, s)?;
        for (o, filt) in out.iter_mut().zip(&self.filters) {
            let e: f32 = s.power[filt.start..filt.start + filt.weights.len()]
                .iter()
                .zip(&filt.weights)
                .map(|(p, w)| p * w)
                .sum();
            *o = (e + LOG_EPS).ln();
        }
        Ok(())
    }

    /// The log-mel spectrogram of 16 kHz `samples`, row-major
    /// `[n_mels, frames]` (frequency-major) with `frames =`
    /// [`LogMel::num_frames`]`(samples.len())`. Long inputs are computed in
    /// parallel. An empty input is an error.
    pub fn compute(&self, samples: &[f32]) -> Result<Vec<f32>> {
        let frames = Self::num_frames(samples.len());
        if frames == 0 {
            return Err(Error::invalid(
                "LogMel::compute",
                "cannot compute a spectrogram of zero samples",
            ));
        }
        let n_mels = self.n_mels;
        // Frame-major first ([frames, n_mels]); transposed at the end.
        let mut by_frame = vec![0.0f32; frames * n_mels];
        let run = |first_frame: usize, block: &mut [f32]| -> Result<()> {
            let mut s = self.scratch();
            for (j, out) in block.chunks_exact_mut(n_mels).enumerate() {
                let start = (first_frame + j) * HOP_LENGTH;
                let end = (start + WIN_LENGTH).min(samples.len());
                self.frame_logmel(&samples[start..end], &mut s, out)?;
            }
            Ok(())
        };
        if frames >= PAR_MIN_FRAMES {
            by_frame
                .par_chunks_mut(FRAMES_PER_TASK * n_mels)
                .enumerate()
                .try_for_each(|(i, block)| run(i * FRAMES_PER_TASK, block))?;
        } else {
            run(0, &mut by_frame)?;
        }
        let mut out = vec![0.0f32; n_mels * frames];
        for (t, row) in by_frame.chunks_exact(n_mels).enumerate() {
            for (m, &v) in row.iter().enumerate() {
                out[m * frames + t] = v;
            }
        }
        Ok(out)
    }
}

/// Per-dataset scalar normalisation of log-mel spectrograms (METHOD.md §1):
/// `x ↦ (x − mean) / std`, computed once over the training set and stored
/// with the run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormStats {
    /// Mean of all spectrogram values.
    pub mean: f32,
    /// Standard deviation (population) of all spectrogram values.
    pub std: f32,
}

impl NormStats {
    /// Mean and standard deviation over every value of every spectrogram,
    /// accumulated in f64 (per-spectrogram moments merged with Chan's
    /// formula). Errors if there are no values, a value is not finite, or all
    /// values are equal (zero spread cannot be normalised).
    pub fn from_spectrograms<I>(specs: I) -> Result<Self>
    where
        I: IntoIterator,
        I::Item: AsRef<[f32]>,
    {
        let (mut n, mut mean, mut m2) = (0f64, 0f64, 0f64);
        for spec in specs {
            let spec = spec.as_ref();
            if spec.is_empty() {
                continue;
            }
            if spec.iter().any(|v| !v.is_finite()) {
                return Err(Error::invalid(
                    "NormStats::from_spectrograms",
                    "a spectrogram contains a non-finite value",
                ));
            }
            let nb = spec.len() as f64;
            let mb = spec.iter().map(|&v| f64::from(v)).sum::<f64>() / nb;
            let m2b: f64 = spec
                .iter()
                .map(|&v| {
                    let d = f64::from(v) - mb;
                    d * d
                })
                .sum();
            let total = n + nb;
            let delta = mb - mean;
            mean += delta * nb / total;
            m2 += m2b + delta * delta * n * nb / total;
            n = total;
        }
        if n == 0.0 {
            return Err(Error::invalid(
                "NormStats::from_spectrograms",
                "no spectrogram values to compute statistics from",
            ));
        }
        let std = (m2 / n).sqrt();
        if std <= 0.0 || !std.is_finite() {
            return Err(Error::invalid(
                "NormStats::from_spectrograms",
                format!("all spectrogram values equal {mean}; the standard deviation is zero"),
            ));
        }
        Ok(Self {
            mean: mean as f32,
            std: std as f32,
        })
    }

    /// Normalises `spec` in place: `x ← (x − mean) / std`.
    pub fn apply(&self, spec: &mut [f32]) {
        let inv = 1.0 / self.std;
        for v in spec {
            *v = (*v - self.mean) * inv;
        }
    }
}
