//! Batched k-means steps on the CPU.
//!
//! Assignment: per (problem, tile of rows) task, one serial GEMM gives the
//! `rows × k` dot products, the arg-min of `‖c‖² − 2x·c` runs over each row
//! (the full n×k matrix never exists), and the chosen distance is recomputed
//! exactly. Update: each problem's points are cut into a fixed number of
//! chunks (a function of n only, so results do not depend on the thread
//! count); each chunk sums its points per cluster in f64, and the chunk
//! partials are reduced in order.

use rayon::prelude::*;

use crate::backend::cpu::{CpuBackend, check_len};
use crate::error::{Error, Result};
use crate::ops::kmeans::kernels::{KMeansKernels, KMeansSpec};
use crate::ops::matmul::cpu::gemm_serial;
use crate::ops::matmul::kernels::GemmSpec;

/// Rows per assignment task.
const ROW_TILE: usize = 128;
/// Points per update chunk, at least.
const UPDATE_CHUNK_MIN: usize = 2048;
/// Update chunks per problem, at most (bounds the partials' memory).
const UPDATE_CHUNKS_MAX: usize = 16;

fn check_buffers(
    op: &'static str,
    s: &KMeansSpec,
    data: &[f32],
    out: &[(&str, usize, usize)],
) -> Result<()> {
    check_len(op, "data", data, s.problems * s.n * s.d)?;
    for &(what, have, need) in out {
        if have < need {
            return Err(Error::shape(
                op,
                format!("{what} holds {have} elements, needs {need}"),
            ));
        }
    }
    Ok(())
}

/// Rejects `k = 0` or `d = 0`.
fn check_dims(op: &'static str, s: &KMeansSpec) -> Result<()> {
    if s.k == 0 || s.d == 0 {
        return Err(Error::invalid(
            op,
            format!("k = {} and d = {} must both be at least 1", s.k, s.d),
        ));
    }
    Ok(())
}

/// Points per update chunk for `n` points.
fn update_chunk(n: usize) -> usize {
    n.div_ceil(UPDATE_CHUNKS_MAX)
        .max(UPDATE_CHUNK_MIN)
        .min(n.max(1))
}

impl KMeansKernels for CpuBackend {
    fn kmeans_assign(
        &self,
        s: &KMeansSpec,
        data: &Vec<f32>,
        centroids: &Vec<f32>,
        labels: &mut Vec<f32>,
        min_dist: &mut Vec<f32>,
    ) -> Result<()> {
        let (n, k, d) = (s.n, s.k, s.d);
        check_buffers(
            "kmeans_assign",
            s,
            data,
            &[
                ("centroids", centroids.len(), s.problems * k * d),
                ("labels", labels.len(), s.problems * n),
                ("min_dist", min_dist.len(), s.problems * n),
            ],
        )?;
        check_dims("kmeans_assign", s)?;
        if s.problems == 0 || n == 0 {
            return Ok(());
        }
        let c_norms: Vec<f32> = centroids[..s.problems * k * d]
            .chunks_exact(d)
            .map(|c| c.iter().map(|v| v * v).sum())
            .collect();
        labels[..s.problems * n]
            .par_chunks_mut(n)
            .zip(min_dist[..s.problems * n].par_chunks_mut(n))
            .enumerate()
            .for_each(|(p, (lab_p, dist_p))| {
                let x_p = &data[p * n * d..(p + 1) * n * d];
                let c_p = &centroids[p * k * d..(p + 1) * k * d];
                let cn_p = &c_norms[p * k..(p + 1) * k];
                lab_p
                    .par_chunks_mut(ROW_TILE)
                    .zip(dist_p.par_chunks_mut(ROW_TILE))
                    .enumerate()
                    .for_each_init(
                        || vec![0.0f32; ROW_TILE * k],
                        |dots, (t, (lab_t, dist_t))| {
                            let rows = lab_t.len();
                            let r0 = t * ROW_TILE;
                            let x_t = &x_p[r0 * d..(r0 + rows) * d];
                            let spec = GemmSpec::new(rows, k, d).transposed(false, true);
                            gemm_serial(&spec, x_t, c_p, &mut dots[..rows * k]);
                            for (r, (lab, dist)) in
                                lab_t.iter_mut().zip(dist_t.iter_mut()).enumerate()
                            {
                                let row = &dots[r * k..(r + 1) * k];
                                let (mut best, mut best_v) = (0usize, f32::INFINITY);
                                for (l, (&dot, &cn)) in row.iter().zip(cn_p).enumerate() {
                                    let v = cn - 2.0 * dot;
                                    if v < best_v {
                                        best = l;
                                        best_v = v;
                                    }
                                }
                                let x = &x_t[r * d..(r + 1) * d];
                                let c = &c_p[best * d..(best + 1) * d];
                                *dist = x.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum();
                                *lab = best as f32;
                            }
                        },
                    );
            });
        Ok(())
    }

    fn kmeans_update(
        &self,
        s: &KMeansSpec,
        data: &Vec<f32>,
        labels: &Vec<f32>,
        sums: &mut Vec<f32>,
        counts: &mut Vec<f32>,
    ) -> Result<()> {
        let (n, k, d) = (s.n, s.k, s.d);
        check_buffers(
            "kmeans_update",
            s,
            data,
            &[
                ("labels", labels.len(), s.problems * n),
                ("sums", sums.len(), s.problems * k * d),
                ("counts", counts.len(), s.problems * k),
            ],
        )?;
        check_dims("kmeans_update", s)?;
        let chunk = update_chunk(n);
        let chunks = n.div_ceil(chunk);
        // One f64 partial (k·d sums, then k counts) per (problem, chunk).
        let partials: Vec<Vec<f64>> = (0..s.problems * chunks)
            .into_par_iter()
            .map(|task| -> Result<Vec<f64>> {
                let (p, c) = (task / chunks, task % chunks);
                let lo = c * chunk;
                let hi = (lo + chunk).min(n);
                let mut acc = vec![0.0f64; k * d + k];
                let (acc_sums, acc_counts) = acc.split_at_mut(k * d);
                for i in lo..hi {
                    let v = labels[p * n + i];
                    if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0 && (v as usize) < k) {
                        return Err(Error::invalid(
                            "kmeans_update",
                            format!("label {v} of point {i} in problem {p} is not in 0..{k}"),
                        ));
                    }
                    let l = v as usize;
                    let x = &data[(p * n + i) * d..(p * n + i + 1) * d];
                    acc_sums[l * d..(l + 1) * d]
                        .iter_mut()
                        .zip(x)
                        .for_each(|(a, &x)| *a += f64::from(x));
                    acc_counts[l] += 1.0;
                }
                Ok(acc)
            })
            .collect::<Result<_>>()?;
        sums[..s.problems * k * d]
            .par_chunks_mut(k * d)
            .zip(counts[..s.problems * k].par_chunks_mut(k))
            .enumerate()
            .for_each(|(p, (sum_p, count_p))| {
                let mut total = vec![0.0f64; k * d + k];
                for part in &partials[p * chunks..(p + 1) * chunks] {
                    total.iter_mut().zip(part).for_each(|(t, v)| *t += v);
                }
                let (t_sums, t_counts) = total.split_at(k * d);
                sum_p
                    .iter_mut()
                    .zip(t_sums)
                    .for_each(|(o, &v)| *o = v as f32);
                count_p
                    .iter_mut()
                    .zip(t_counts)
                    .for_each(|(o, &v)| *o = v as f32);
            });
        Ok(())
    }
}
