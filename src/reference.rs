//! Definitions in f64 of what the kernels compute, written as plainly as
//! the maths: the ground truth the op tests and the benchmarks' output
//! checks both compare against (one copy, so a fix reaches both).

use crate::data::melspec::{F_MAX, N_FFT, SAMPLE_RATE};
use crate::kmeans::SPLIT_EPS;

/// `log Σ exp(v)`, shifted by the maximum.
pub fn lse(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Symmetric InfoNCE of `za`, `zv` (`[b, d]`) at temperature `tau`, by
/// definition: the loss and both gradients.
pub fn infonce(za: &[f32], zv: &[f32], b: usize, d: usize, tau: f64) -> (f64, Vec<f32>, Vec<f32>) {
    let s: Vec<Vec<f64>> = (0..b)
        .map(|i| {
            (0..b)
                .map(|j| {
                    (0..d)
                        .map(|k| f64::from(za[i * d + k]) * f64::from(zv[j * d + k]))
                        .sum::<f64>()
                        / tau
                })
                .collect()
        })
        .collect();
    let row: Vec<f64> = s.iter().map(|r| lse(r)).collect();
    let col: Vec<f64> = (0..b)
        .map(|j| lse(&s.iter().map(|r| r[j]).collect::<Vec<_>>()))
        .collect();
    let loss = (0..b).map(|i| row[i] + col[i] - 2.0 * s[i][i]).sum::<f64>() / (2.0 * b as f64);
    let (mut dza, mut dzv) = (vec![0.0f64; b * d], vec![0.0f64; b * d]);
    let c = 1.0 / (2.0 * b as f64 * tau);
    for i in 0..b {
        for j in 0..b {
            let w = (s[i][j] - row[i]).exp() + (s[i][j] - col[j]).exp()
                - if i == j { 2.0 } else { 0.0 };
            for k in 0..d {
                dza[i * d + k] += c * w * f64::from(zv[j * d + k]);
                dzv[j * d + k] += c * w * f64::from(za[i * d + k]);
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (loss, f(dza), f(dzv))
}

/// Squared Euclidean distance of an f32 point to an f64 centre.
pub fn sq_dist(x: &[f32], c: &[f64]) -> f64 {
    x.iter()
        .zip(c)
        .map(|(&a, &b)| (f64::from(a) - b) * (f64::from(a) - b))
        .sum()
}

/// Plain Lloyd in f64 with loops: `iters` steps from `init`, empty clusters
/// split off the largest as the library documents; returns the inertia of
/// the final assignment.
pub fn lloyd_inertia(x: &[f32], n: usize, d: usize, k: usize, init: &[f32], iters: usize) -> f64 {
    let mut c: Vec<f64> = init.iter().map(|&v| f64::from(v)).collect();
    let assign = |c: &[f64]| -> Vec<(usize, f64)> {
        (0..n)
            .map(|i| {
                let mut best = (0, f64::INFINITY);
                for l in 0..k {
                    let dist = sq_dist(&x[i * d..(i + 1) * d], &c[l * d..(l + 1) * d]);
                    if dist < best.1 {
                        best = (l, dist);
                    }
                }
                best
            })
            .collect()
    };
    for _ in 0..iters {
        let labels = assign(&c);
        let mut sums = vec![0.0f64; k * d];
        let mut counts = vec![0.0f64; k];
        for (i, &(l, _)) in labels.iter().enumerate() {
            counts[l] += 1.0;
            for j in 0..d {
                sums[l * d + j] += f64::from(x[i * d + j]);
            }
        }
        for l in 0..k {
            if counts[l] > 0.0 {
                for j in 0..d {
                    c[l * d + j] = sums[l * d + j] / counts[l];
                }
            }
        }
        for l in 0..k {
            if counts[l] > 0.0 {
                continue;
            }
            let mut big = 0;
            for j in 0..k {
                if counts[j] > counts[big] {
                    big = j;
                }
            }
            let eps = f64::from(SPLIT_EPS);
            for j in 0..d {
                let v = c[big * d + j];
                let sign = if j % 2 == 0 { 1.0 } else { -1.0 };
                c[l * d + j] = v + sign * eps * v.abs();
                c[big * d + j] = v - sign * eps * v.abs();
            }
            counts[l] = (counts[big] / 2.0).floor();
            counts[big] -= counts[l];
        }
    }
    assign(&c).iter().map(|&(_, dist)| dist).sum()
}

/// HTK triangular filterbank `[n_mels][257]` in f64, written from the
/// definition (with the nearest-bin fallback for filters between two bins).
pub fn mel_filterbank(n_mels: usize) -> Vec<Vec<f64>> {
    let mel = |f: f64| 2595.0 * (1.0 + f / 700.0).log10();
    let hz = |m: f64| 700.0 * (10f64.powf(m / 2595.0) - 1.0);
    let pts: Vec<f64> = (0..n_mels + 2)
        .map(|i| hz(mel(F_MAX) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let bin_hz = f64::from(SAMPLE_RATE) / N_FFT as f64;
    (0..n_mels)
        .map(|m| {
            let mut row: Vec<f64> = (0..=N_FFT / 2)
                .map(|k| {
                    let f = k as f64 * bin_hz;
                    let up = (f - pts[m]) / (pts[m + 1] - pts[m]);
                    let down = (pts[m + 2] - f) / (pts[m + 2] - pts[m + 1]);
                    up.min(down).max(0.0)
                })
                .collect();
            if row.iter().all(|&w| w == 0.0) {
                row[(pts[m + 1] / bin_hz).round() as usize] = 1.0;
            }
            row
        })
        .collect()
}

/// Weighted prototype loss by definition in f64 (W[y,y] read as 1).
#[allow(clippy::too_many_arguments)]
pub fn class_align_loss(
    z: &[f32],
    mu: &[f32],
    labels: &[f32],
    w: Option<&[f32]>,
    n: usize,
    k: usize,
    d: usize,
    tau: f64,
) -> f64 {
    let mut loss = 0.0;
    for i in 0..n {
        let y = labels[i] as usize;
        let a: Vec<f64> = (0..k)
            .map(|l| {
                (0..d)
                    .map(|j| f64::from(z[i * d + j]) * f64::from(mu[l * d + j]))
                    .sum::<f64>()
                    / tau
            })
            .collect();
        let wl: Vec<f64> = (0..k)
            .map(|l| match w {
                Some(w) if l != y => a[l] + f64::from(w[y * k + l]).ln(),
                _ => a[l],
            })
            .collect();
        loss += lse(&wl) - a[y];
    }
    loss / n as f64
}
