//! k-nearest-neighbour classification on cosine similarity.

use crate::backend::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::ops::{GemmSpec, MatmulKernels};

/// Temperature of the similarity-weighted vote (as in DINO's kNN).
pub const VOTE_TEMPERATURE: f32 = 0.07;

/// Rows scaled to unit length.
pub fn l2_rows(x: &[f32], d: usize) -> Vec<f32> {
    let mut out = x.to_vec();
    for row in out.chunks_exact_mut(d) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|v| *v /= n);
    }
    out
}

/// Cosine similarities `[nq, nc]` of query rows to candidate rows.
pub fn cosine_similarity(queries: &[f32], candidates: &[f32], d: usize) -> Result<Vec<f32>> {
    let (nq, nc) = (queries.len() / d.max(1), candidates.len() / d.max(1));
    let (q, c) = (l2_rows(queries, d), l2_rows(candidates, d));
    let mut sim = vec![0.0f32; nq * nc];
    CpuBackend::new().gemm(
        &GemmSpec::new(nq, nc, d).transposed(false, true),
        &q,
        &c,
        &mut sim,
    )?;
    Ok(sim)
}

/// Predicts each test row's class from its `k` most similar training rows,
/// each voting with weight `exp(sim / 0.07)`; returns the predictions.
pub fn knn_predict(
    train_x: &[f32],
    train_y: &[usize],
    test_x: &[f32],
    d: usize,
    classes: usize,
    k: usize,
) -> Result<Vec<usize>> {
    if d == 0
        || train_x.len() != train_y.len() * d
        || !test_x.len().is_multiple_of(d)
        || train_y.is_empty()
    {
        return Err(Error::shape(
            "knn",
            format!(
                "{} training values for {} rows × {d}",
                train_x.len(),
                train_y.len()
            ),
        ));
    }
    let n = train_y.len();
    let sim = cosine_similarity(test_x, train_x, d)?;
    let k = k.clamp(1, n);
    Ok(sim
        .chunks_exact(n)
        .map(|row| {
            let mut idx: Vec<usize> = (0..n).collect();
            idx.select_nth_unstable_by(k - 1, |&a, &b| row[b].total_cmp(&row[a]));
            let mut votes = vec![0.0f64; classes];
            for &j in &idx[..k] {
                votes[train_y[j]] += f64::from(((row[j] - 1.0) / VOTE_TEMPERATURE).exp());
            }
            votes
                .iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |best, (c, &v)| {
                    if v > best.1 { (c, v) } else { best }
                })
                .0
        })
        .collect())
}
