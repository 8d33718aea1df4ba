//! Batched k-means (METHOD.md §3.2, §6.2): k-means++ seeding, Lloyd
//! iterations on the backend's [`KMeansKernels`], empty clusters re-seeded by
//! splitting the largest one. Not a tape op: no gradient.
//!
//! Host traffic: [`kmeans`] downloads the data once for k-means++ seeding.
//! Each Lloyd iteration downloads the per-cluster sums and counts
//! (`P·K·(d+1)` floats) to form the new centroids and split empty clusters,
//! and uploads the centroids (`P·K·d`); the labels and distances stay on the
//! backend until the end, when the distances (`P·N`) come back for the
//! inertia.

use rand::Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::ops::{Backend, KMeansSpec};
use crate::rng::seeded;
use crate::tensor::Tensor;

const OP: &str = "kmeans";

/// Relative perturbation of a split centroid (faiss's `EPS = 1/1024`).
pub const SPLIT_EPS: f32 = 1.0 / 1024.0;

/// Settings of a k-means run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KMeansConfig {
    /// Clusters per problem, `1 ≤ k ≤ n`.
    pub k: usize,
    /// Lloyd iterations, at most (the run stops earlier once the centroids
    /// stop changing bit for bit, after which more iterations change nothing).
    pub iters: usize,
    /// Seed of the k-means++ seeding; problem `p` uses [`problem_seed`]`(seed, p)`.
    pub seed: u64,
}

impl KMeansConfig {
    /// `k` clusters, 20 iterations, seed 0.
    pub fn new(k: usize) -> Self {
        KMeansConfig {
            k,
            iters: 20,
            seed: 0,
        }
    }
}

/// The outcome of [`kmeans`]. Tensors have a leading problem dim when the
/// data had one.
pub struct KMeansResult<B: Backend> {
    /// Centroids `[P, K, d]` (or `[K, d]`).
    pub centroids: Tensor<B>,
    /// Index of the nearest final centroid for every point, f32-encoded,
    /// `[P, N]` (or `[N]`): the pseudo-label layout
    /// [`crate::ops::class_align::class_align`] reads.
    pub labels: Tensor<B>,
    /// Per problem, `Σ_i ‖x_i − c_{label_i}‖²` for the final centroids.
    pub inertia: Vec<f64>,
    /// Per problem, the number of points in each cluster under `labels`.
    pub sizes: Vec<Vec<usize>>,
    /// Lloyd iterations run (the same for every problem).
    pub iterations: usize,
}

/// The seed k-means++ uses for problem `p` of a run seeded with `seed`.
pub fn problem_seed(seed: u64, p: usize) -> u64 {
    seed ^ (p as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// k-means++ seeding on host data `[n, d]`: the first centroid is a uniformly
/// random point, each next one a point drawn with probability proportional
/// to its squared distance to the nearest chosen centroid. When every point
/// already coincides with a centroid (fewer distinct points than `k`), the
/// draw is uniform, so centroids repeat; Lloyd then splits them. Returns
/// `[k, d]`; deterministic in `seed`.
pub fn kmeans_plus_plus_init(
    data: &[f32],
    n: usize,
    d: usize,
    k: usize,
    seed: u64,
) -> Result<Vec<f32>> {
    check_sizes(n, d, k)?;
    if data.len() != n * d {
        return Err(Error::shape(
            OP,
            format!(
                "data holds {} elements, [{n}, {d}] needs {}",
                data.len(),
                n * d
            ),
        ));
    }
    let mut rng = seeded(seed);
    let mut centroids = Vec::with_capacity(k * d);
    let first = rng.random_range(0..n);
    centroids.extend_from_slice(&data[first * d..(first + 1) * d]);
    let mut dist = vec![f64::INFINITY; n];
    for j in 1..k {
        let c = &centroids[(j - 1) * d..j * d];
        dist.par_iter_mut()
            .zip(data.par_chunks_exact(d))
            .for_each(|(m, x)| {
                let v: f64 = x
                    .iter()
                    .zip(c)
                    .map(|(&a, &b)| f64::from(a - b) * f64::from(a - b))
                    .sum();
                *m = m.min(v);
            });
        let total: f64 = dist.iter().sum();
        let pick = if total > 0.0 && total.is_finite() {
            let target = rng.random::<f64>() * total;
            let mut acc = 0.0;
            // The last point with positive weight takes any rounding slack.
            let mut pick = dist.iter().rposition(|&v| v > 0.0).unwrap_or(0);
            for (i, &v) in dist.iter().enumerate() {
                acc += v;
                if acc > target && v > 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            rng.random_range(0..n)
        };
        centroids.extend_from_slice(&data[pick * d..(pick + 1) * d]);
    }
    Ok(centroids)
}

fn check_sizes(n: usize, d: usize, k: usize) -> Result<()> {
    if n < 1 || d < 1 || k < 1 {
        return Err(Error::invalid(
            OP,
            format!(
                "need at least one point, one dimension and one cluster (N = {n}, d = {d}, K = {k})"
            ),
        ));
    }
    if k > n {
        return Err(Error::invalid(
            OP,
            format!("K = {k} clusters exceed the N = {n} points"),
        ));
    }
    Ok(())
}

/// `(P, N, d)` from a `[P, N, d]` or `[N, d]` data shape.
fn data_dims(shape: &[usize]) -> Result<(usize, usize, usize, bool)> {
    match *shape {
        [n, d] => Ok((1, n, d, false)),
        [p, n, d] if p >= 1 => Ok((p, n, d, true)),
        _ => Err(Error::shape(
            OP,
            format!("data {shape:?} must be [N, d] or [P, N, d] with P ≥ 1"),
        )),
    }
}

/// Clusters every problem of `data` (`[P, N, d]`, or `[N, d]` for one) with
/// k-means++ seeding from `cfg.seed` and then [`kmeans_with_init`]. Seeding
/// downloads the data to the host once and rejects non-finite values.
pub fn kmeans<B: Backend>(
    backend: &B,
    data: &Tensor<B>,
    cfg: &KMeansConfig,
) -> Result<KMeansResult<B>> {
    let (p, n, d, batched) = data_dims(data.shape())?;
    check_sizes(n, d, cfg.k)?;
    let host = data.to_host(backend)?;
    if let Some(i) = host.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            OP,
            format!("data element {i} is {}: k-means needs finite data", host[i]),
        ));
    }
    let mut init = Vec::with_capacity(p * cfg.k * d);
    for (q, x) in host.chunks_exact(n * d).enumerate() {
        init.extend(kmeans_plus_plus_init(
            x,
            n,
            d,
            cfg.k,
            problem_seed(cfg.seed, q),
        )?);
    }
    let shape = if batched {
        vec![p, cfg.k, d]
    } else {
        vec![cfg.k, d]
    };
    let init = Tensor::from_host(backend, &shape, &init)?;
    kmeans_with_init(backend, data, &init, cfg)
}

/// Lloyd iterations from given centroids `init` (`[P, K, d]`, or `[K, d]`
/// with 2-D data; `cfg.seed` is unused). Each iteration assigns every point
/// to its nearest centroid and moves each centroid to its cluster's mean.
///
/// An empty cluster is re-seeded by splitting the currently largest one
/// (ties: lowest index): it takes a copy of that centroid with every
/// coordinate scaled by `1 ± SPLIT_EPS` (alternating signs, the opposite
/// signs applied to the original; a zero coordinate moves by `SPLIT_EPS`
/// times the centroid's largest magnitude, or by `SPLIT_EPS` when the
/// centroid is zero), and the two share the largest cluster's count for
/// later splits in the same step. When the split cluster's points are all
/// identical, the two copies are equally near them and the lower index takes
/// them all: the other stays empty, with a finite centroid next to them, no
/// label points to it and its size is 0; when the run ends right after such
/// a split, the centroid holding the points sits `SPLIT_EPS` (relative) off
/// them, so the inertia carries about `d·(SPLIT_EPS·|x|)²` per point. No NaN
/// appears in any case.
pub fn kmeans_with_init<B: Backend>(
    backend: &B,
    data: &Tensor<B>,
    init: &Tensor<B>,
    cfg: &KMeansConfig,
) -> Result<KMeansResult<B>> {
    let (p, n, d, batched) = data_dims(data.shape())?;
    let k = cfg.k;
    check_sizes(n, d, k)?;
    let want: Vec<usize> = if batched { vec![p, k, d] } else { vec![k, d] };
    if init.shape() != want.as_slice() {
        return Err(Error::shape(
            OP,
            format!(
                "initial centroids {:?} must be {want:?} for data {:?}",
                init.shape(),
                data.shape()
            ),
        ));
    }
    let spec = KMeansSpec {
        problems: p,
        n,
        k,
        d,
    };
    let mut centroids = init.duplicate(backend)?.into_buf();
    let mut host_c = init.to_host(backend)?;
    let mut labels = backend.zeros(p * n)?;
    let mut min_dist = backend.zeros(p * n)?;
    let mut sums = backend.zeros(p * k * d)?;
    let mut counts = backend.zeros(p * k)?;
    let mut iterations = 0;
    while iterations < cfg.iters {
        backend.kmeans_assign(&spec, data.buf(), &centroids, &mut labels, &mut min_dist)?;
        backend.kmeans_update(&spec, data.buf(), &labels, &mut sums, &mut counts)?;
        iterations += 1;
        let next = new_centroids(
            &spec,
            &backend.download(&sums)?,
            &backend.download(&counts)?,
        );
        if next == host_c {
            break;
        }
        host_c = next;
        centroids = backend.upload(&host_c)?;
    }
    backend.kmeans_assign(&spec, data.buf(), &centroids, &mut labels, &mut min_dist)?;
    backend.kmeans_update(&spec, data.buf(), &labels, &mut sums, &mut counts)?;
    let dist = backend.download(&min_dist)?;
    let inertia = dist
        .chunks_exact(n)
        .map(|c| c.iter().map(|&v| f64::from(v)).sum())
        .collect();
    let sizes = backend
        .download(&counts)?
        .chunks_exact(k)
        .map(|c| c.iter().map(|&v| v as usize).collect())
        .collect();
    let label_shape: Vec<usize> = if batched { vec![p, n] } else { vec![n] };
    Ok(KMeansResult {
        centroids: Tensor::from_buf(backend, &want, centroids)?,
        labels: Tensor::from_buf(backend, &label_shape, labels)?,
        inertia,
        sizes,
        iterations,
    })
}

/// Cluster means from sums and counts, with empty clusters split off the
/// largest (see [`kmeans_with_init`]): every cluster is a mean or a split copy.
fn new_centroids(s: &KMeansSpec, sums: &[f32], counts: &[f32]) -> Vec<f32> {
    let (k, d) = (s.k, s.d);
    let mut out = vec![0.0; s.problems * k * d];
    for ((c_p, sum_p), count_p) in out
        .chunks_exact_mut(k * d)
        .zip(sums.chunks_exact(k * d))
        .zip(counts.chunks_exact(k))
    {
        let mut sizes: Vec<f32> = count_p.to_vec();
        for l in 0..k {
            if sizes[l] > 0.0 {
                let inv = 1.0 / sizes[l];
                c_p[l * d..(l + 1) * d]
                    .iter_mut()
                    .zip(&sum_p[l * d..(l + 1) * d])
                    .for_each(|(c, &s)| *c = s * inv);
            }
        }
        for l in 0..k {
            if sizes[l] > 0.0 {
                continue;
            }
            let big = (0..k).fold(0, |b, j| if sizes[j] > sizes[b] { j } else { b });
            split(c_p, d, big, l);
            sizes[l] = (sizes[big] / 2.0).floor();
            sizes[big] -= sizes[l];
        }
    }
    out
}

/// Copies centroid `from` into `to` and pushes the two apart by `SPLIT_EPS`.
fn split(c: &mut [f32], d: usize, from: usize, to: usize) {
    let src: Vec<f32> = c[from * d..(from + 1) * d].to_vec();
    let largest = src.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let fallback = if largest > 0.0 { largest } else { 1.0 };
    for (j, &v) in src.iter().enumerate() {
        let step = SPLIT_EPS * if v != 0.0 { v.abs() } else { fallback };
        let sign = if j % 2 == 0 { 1.0 } else { -1.0 };
        c[to * d + j] = v + sign * step;
        c[from * d + j] = v - sign * step;
    }
}
