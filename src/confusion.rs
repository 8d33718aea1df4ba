//! The epoch-end update of the confusion weights (METHOD.md §3.5–3.6), as
//! pure functions on host `K×K` row-major f32 matrices. The accumulated soft
//! confusion matrix `C` comes from [`crate::ops::class_align::class_align`].

use crate::error::{Error, Result};

const OP: &str = "confusion";

fn check_square(what: &str, m: &[f32], k: usize) -> Result<()> {
    if m.len() != k * k {
        return Err(Error::shape(
            OP,
            format!(
                "{what} has {} elements, a {k}×{k} matrix needs {}",
                m.len(),
                k * k
            ),
        ));
    }
    Ok(())
}

/// Row-normalises `C` to `P` (each row sums to 1). A row with no mass (a
/// cluster that received no samples this epoch) stays zero.
pub fn row_normalise(c: &[f32], k: usize) -> Result<Vec<f32>> {
    check_square("C", c, k)?;
    let mut p = c.to_vec();
    for row in p.chunks_exact_mut(k.max(1)) {
        let sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
        if sum > 0.0 {
            row.iter_mut()
                .for_each(|v| *v = (f64::from(*v) / sum) as f32);
        } else {
            row.fill(0.0);
        }
    }
    Ok(p)
}

/// The symmetric confusion degree `D = (P + Pᵀ)/2` with a zero diagonal.
pub fn symmetric_degree(p: &[f32], k: usize) -> Result<Vec<f32>> {
    check_square("P", p, k)?;
    let mut d = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            if i != j {
                d[i * k + j] = 0.5 * (p[i * k + j] + p[j * k + i]);
            }
        }
    }
    Ok(d)
}

/// The target weights `W_new = 1 + β·D/max(D)`; all ones when `max(D) = 0`.
pub fn target_weights(d: &[f32], k: usize, beta: f32) -> Result<Vec<f32>> {
    check_square("D", d, k)?;
    let max = d.iter().fold(0.0f32, |m, &v| m.max(v));
    Ok(if max > 0.0 {
        d.iter().map(|&v| 1.0 + beta * v / max).collect()
    } else {
        vec![1.0; k * k]
    })
}

/// The moving average `W ← γ·W + (1−γ)·W_new`, in place.
pub fn ema(w: &mut [f32], w_new: &[f32], k: usize, gamma: f32) -> Result<()> {
    check_square("W", w, k)?;
    check_square("W_new", w_new, k)?;
    w.iter_mut()
        .zip(w_new)
        .for_each(|(w, &n)| *w = gamma * *w + (1.0 - gamma) * n);
    Ok(())
}

/// The whole epoch-end step: `C → P → D → W_new`, then the moving average of
/// `w` towards it. `beta ≥ 0` keeps every weight ≥ 1 when `w` starts at ones.
pub fn update_weights(w: &mut [f32], c: &[f32], k: usize, beta: f32, gamma: f32) -> Result<()> {
    if !(beta.is_finite() && beta >= 0.0 && (0.0..=1.0).contains(&gamma)) {
        return Err(Error::invalid(
            OP,
            format!("beta {beta} must be ≥ 0 and gamma {gamma} in [0, 1]"),
        ));
    }
    let p = row_normalise(c, k)?;
    let d = symmetric_degree(&p, k)?;
    let w_new = target_weights(&d, k, beta)?;
    ema(w, &w_new, k, gamma)
}
