//! Log-mel spectrogram: framing, silence, tone peaks, the power spectrum
//! against a direct DFT, the whole transform against an f64 reference, the
//! parallel path, and the dataset normalisation statistics.

use diccae_engine::data::melspec::{HOP_LENGTH, LOG_EPS, N_FFT, SAMPLE_RATE, WIN_LENGTH};
use diccae_engine::data::{LogMel, NormStats};
use diccae_engine::gradcheck::all_close;
use diccae_engine::reference::mel_filterbank;
use diccae_engine::rng::{seeded, uniform_vec};

fn tone(freq: f64, amp: f64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(SAMPLE_RATE)).sin())
                as f32
        })
        .collect()
}

/// Periodic Hann window, as the definition states.
fn hann(i: usize) -> f64 {
    0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / WIN_LENGTH as f64).cos()
}

/// `|X_k|²` of the windowed, zero-padded frame by the O(n²) DFT, in f64.
fn dft_power(frame: &[f32]) -> Vec<f64> {
    let x: Vec<f64> = (0..WIN_LENGTH)
        .map(|i| frame.get(i).map_or(0.0, |&v| f64::from(v) * hann(i)))
        .collect();
    (0..=N_FFT / 2)
        .map(|k| {
            let (mut re, mut im) = (0.0, 0.0);
            for (n, &v) in x.iter().enumerate() {
                let ph = -2.0 * std::f64::consts::PI * (k * n) as f64 / N_FFT as f64;
                re += v * ph.cos();
                im += v * ph.sin();
            }
            re * re + im * im
        })
        .collect()
}

#[test]
fn frame_count_formula() {
    for (len, frames) in [
        (1, 1),
        (399, 1),
        (400, 1),
        (559, 1),
        (560, 2),
        (16000, 98),
        (16001, 98),
        (48000, 298),
    ] {
        assert_eq!(LogMel::num_frames(len), frames, "len {len}");
        if len >= WIN_LENGTH {
            assert_eq!(LogMel::num_frames(len), 1 + (len - WIN_LENGTH) / HOP_LENGTH);
        }
    }
    assert_eq!(LogMel::num_frames(0), 0);
    for frames in [1, 2, 7, 100] {
        assert_eq!(
            LogMel::num_frames(LogMel::samples_for_frames(frames)),
            frames
        );
    }
    let lm = LogMel::new(40).unwrap();
    for len in [1, 400, 561, 16000, 48000] {
        let out = lm.compute(&vec![0.1; len]).unwrap();
        assert_eq!(out.len(), 40 * LogMel::num_frames(len), "len {len}");
    }
    assert!(lm.compute(&[]).is_err());
    assert!(LogMel::new(0).is_err());
    assert!(LogMel::new(257).is_err());
}

#[test]
fn silence_is_log_eps() {
    let lm = LogMel::new(64).unwrap();
    let out = lm.compute(&vec![0.0; 16000]).unwrap();
    let floor = LOG_EPS.ln();
    assert!(
        out.iter().all(|&v| v == floor),
        "expected ln(1e-6) = {floor}"
    );
}

#[test]
fn tone_energy_peaks_in_its_mel_band() {
    for n_mels in [64, 128] {
        let lm = LogMel::new(n_mels).unwrap();
        for freq in [150.0, 440.0, 1000.0, 2500.0, 4321.0, 7000.0] {
            let x = tone(freq, 0.5, 16000);
            let spec = lm.compute(&x).unwrap();
            let frames = LogMel::num_frames(x.len());
            for t in [0, frames / 2, frames - 1] {
                let col: Vec<f32> = (0..n_mels).map(|m| spec[m * frames + t]).collect();
                let peak = (0..n_mels)
                    .max_by(|&a, &b| col[a].total_cmp(&col[b]))
                    .unwrap();
                let (lo, _, hi) = lm.band_hz(peak).unwrap();
                assert!(
                    (lo as f64) < freq && freq < hi as f64,
                    "n_mels {n_mels}, {freq} Hz peaks in band {peak} = [{lo}, {hi}] Hz"
                );
            }
        }
    }
}

#[test]
fn power_spectrum_matches_direct_dft() {
    let lm = LogMel::new(64).unwrap();
    let mut rng = seeded(5);
    for len in [400, 137] {
        let frame = uniform_vec(&mut rng, len, -1.0, 1.0);
        let got = lm.power_spectrum(&frame).unwrap();
        let want: Vec<f32> = dft_power(&frame).iter().map(|&v| v as f32).collect();
        let scale = want.iter().fold(0f32, |m, &v| m.max(v));
        // f32 FFT rounding: errors relative to the spectrum's peak.
        all_close(&got, &want, 1e-4, 1e-5 * scale).unwrap();
    }
}

#[test]
fn logmel_matches_f64_reference() {
    let mut rng = seeded(9);
    let x = uniform_vec(&mut rng, 400 + 9 * 160 + 77, -0.8, 0.8);
    let frames = LogMel::num_frames(x.len());
    for n_mels in [23, 64, 128] {
        let lm = LogMel::new(n_mels).unwrap();
        let got = lm.compute(&x).unwrap();
        let fb = mel_filterbank(n_mels);
        let mut want = vec![0f32; n_mels * frames];
        for t in 0..frames {
            let p = dft_power(&x[t * HOP_LENGTH..t * HOP_LENGTH + WIN_LENGTH]);
            for m in 0..n_mels {
                let e: f64 = fb[m].iter().zip(&p).map(|(w, v)| w * v).sum();
                want[m * frames + t] = (e + f64::from(LOG_EPS)).ln() as f32;
            }
        }
        // Log domain: absolute error of ~1e-3 is a relative energy error of 0.1%.
        all_close(&got, &want, 0.0, 2e-3).unwrap_or_else(|e| panic!("n_mels {n_mels}: {e}"));
    }
}

#[test]
fn parallel_path_matches_serial_path() {
    // 48 000 samples (298 frames) take the parallel path, the 50-frame prefix the serial one.
    let mut rng = seeded(21);
    let x = uniform_vec(&mut rng, 48000, -1.0, 1.0);
    let lm = LogMel::new(64).unwrap();
    let long = lm.compute(&x).unwrap();
    let short_len = LogMel::samples_for_frames(50);
    let short = lm.compute(&x[..short_len]).unwrap();
    let (fl, fs) = (LogMel::num_frames(x.len()), 50);
    for m in 0..64 {
        assert_eq!(
            &long[m * fl..m * fl + fs],
            &short[m * fs..(m + 1) * fs],
            "band {m}"
        );
    }
}

#[test]
fn norm_stats_match_direct_moments_and_round_trip() {
    let mut rng = seeded(4);
    let specs: Vec<Vec<f32>> = [100, 1, 333, 0, 57]
        .iter()
        .map(|&n| uniform_vec(&mut rng, n, -14.0, 3.0))
        .collect();
    let stats = NormStats::from_spectrograms(&specs).unwrap();
    let all: Vec<f64> = specs.iter().flatten().map(|&v| f64::from(v)).collect();
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    let std = (all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / all.len() as f64).sqrt();
    assert!(
        (f64::from(stats.mean) - mean).abs() < 1e-5,
        "{} vs {mean}",
        stats.mean
    );
    assert!(
        (f64::from(stats.std) - std).abs() < 1e-5,
        "{} vs {std}",
        stats.std
    );

    let mut normed: Vec<f32> = specs.concat();
    stats.apply(&mut normed);
    let m = normed.iter().map(|&v| f64::from(v)).sum::<f64>() / normed.len() as f64;
    let s = (normed
        .iter()
        .map(|&v| (f64::from(v) - m).powi(2))
        .sum::<f64>()
        / normed.len() as f64)
        .sqrt();
    assert!(
        m.abs() < 1e-5 && (s - 1.0).abs() < 1e-5,
        "mean {m}, std {s}"
    );

    let json = serde_json::to_string(&stats).unwrap();
    let back: NormStats = serde_json::from_str(&json).unwrap();
    assert_eq!(back, stats);

    assert!(NormStats::from_spectrograms(Vec::<Vec<f32>>::new()).is_err());
    assert!(NormStats::from_spectrograms([vec![2.0f32; 10]]).is_err());
    assert!(NormStats::from_spectrograms([vec![1.0f32, f32::NAN]]).is_err());
}
