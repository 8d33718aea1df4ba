//! The cluster side of DICCAE (METHOD.md §3.2–3.6): pseudo-labels from
//! k-means on fused embeddings, identities kept across rounds by Hungarian
//! matching, EMA prototypes per modality, the per-epoch soft confusion
//! matrix and the dynamic weights W.
//!
//! Prototypes and W are small (`K×d`, `K×K`): their authoritative copies are
//! kept on the host and uploaded after each change; the confusion
//! accumulator lives on the backend for the whole epoch.

use serde::{Deserialize, Serialize};

use crate::confusion::update_weights;
use crate::error::{Error, Result};
use crate::eval::assignment::max_score_assignment;
use crate::eval::metrics::{ari, hungarian_accuracy, nmi, purity};
use crate::kmeans::{KMeansConfig, kmeans};
use crate::ops::Backend;
use crate::tensor::Tensor;

/// The three embedding spaces prototypes live in.
pub const MODALITIES: [&str; 3] = ["audio", "video", "fused"];

/// What one clustering round measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterRound {
    /// Epoch at whose start the round ran.
    pub epoch: usize,
    /// k-means inertia.
    pub inertia: f64,
    /// Entropy of the cluster sizes divided by ln K (1 = perfectly balanced).
    pub size_entropy: f64,
    /// Fraction of clips whose pseudo-label is unchanged since the previous
    /// round (after matching); absent in the first round.
    pub stability: Option<f64>,
    /// NMI of the pseudo-labels against the true labels, when known.
    pub nmi: Option<f64>,
    /// ARI against the true labels.
    pub ari: Option<f64>,
    /// Accuracy after the best one-to-one cluster-to-class matching (at most
    /// `classes / K` of the clips can match when K exceeds the classes).
    pub accuracy: Option<f64>,
    /// Purity: accuracy when each cluster takes its most frequent class.
    #[serde(default)]
    pub purity: Option<f64>,
    /// Fraction of clips whose pseudo-label the cluster terms train on
    /// (the most confident of each cluster; see [`confident_members`]).
    #[serde(default)]
    pub confident_fraction: Option<f64>,
    /// Accuracy of the confident clips' pseudo-labels after the best
    /// cluster-to-class matching, when the true labels are known.
    #[serde(default)]
    pub confident_accuracy: Option<f64>,
}

/// The training set's embeddings a clustering round works on.
pub struct RoundInput<'a> {
    /// What k-means clusters, `[N, d]`.
    pub space: &'a [f32],
    /// `z_a`, `z_v`, `z_f`, each `[N, d]`: the prototypes' spaces.
    pub modalities: [&'a [f32]; 3],
    /// True labels, to score the pseudo-labels.
    pub truth: Option<&'a [usize]>,
    /// Fraction of each cluster, by assignment margin, whose pseudo-labels
    /// the cluster terms train on (1 = every clip).
    pub keep_fraction: f32,
}

/// `normalise(a + b)` per row of width `d`: the audio-visual clustering space.
pub fn joint_space(a: &[f32], b: &[f32], d: usize) -> Vec<f32> {
    let mut out: Vec<f32> = a.iter().zip(b).map(|(x, y)| x + y).collect();
    normalise_rows(&mut out, d);
    out
}

/// Pseudo-labels, prototypes, confusion statistics and W.
pub struct ClusterState<B: Backend> {
    k: usize,
    dim: usize,
    /// Pseudo-label of every training clip.
    pub labels: Vec<usize>,
    /// Whether each training clip is among its cluster's confident members
    /// (the cluster terms train on these only).
    pub confident: Vec<bool>,
    centroids: Vec<f32>,
    prototypes: [Vec<f32>; 3],
    prototype_tensors: [Tensor<B>; 3],
    /// Dynamic weights `[K, K]` (host copy).
    pub weights: Vec<f32>,
    weight_tensor: Tensor<B>,
    confusion: Tensor<B>,
    /// Every round so far.
    pub rounds: Vec<ClusterRound>,
}

/// The confident members of each cluster: the `keep_fraction` of its clips
/// (at least one) with the largest assignment margin, i.e. cosine similarity
/// to their own centroid minus that to the nearest other centroid. Training
/// the cluster terms on these only keeps the clips k-means placed on a
/// boundary (the likeliest wrong pseudo-labels) out of the loss.
pub fn confident_members(
    space: &[f32],
    labels: &[usize],
    centroids: &[f32],
    k: usize,
    dim: usize,
    keep_fraction: f32,
) -> Vec<bool> {
    let n = labels.len();
    if keep_fraction >= 1.0 || k < 2 {
        return vec![true; n];
    }
    let margin: Vec<f32> = space
        .chunks_exact(dim)
        .zip(labels)
        .map(|(x, &own)| {
            let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            let mut best_other = f32::NEG_INFINITY;
            let mut mine = 0.0f32;
            for (c, mu) in centroids.chunks_exact(dim).enumerate() {
                let s = x.iter().zip(mu).map(|(a, b)| a * b).sum::<f32>() / norm;
                if c == own {
                    mine = s;
                } else {
                    best_other = best_other.max(s);
                }
            }
            mine - best_other
        })
        .collect();
    let mut confident = vec![false; n];
    for c in 0..k {
        let mut members: Vec<usize> = (0..n).filter(|&i| labels[i] == c).collect();
        if members.is_empty() {
            continue;
        }
        members.sort_by(|&a, &b| margin[b].total_cmp(&margin[a]));
        let keep = ((members.len() as f32 * keep_fraction).ceil() as usize).clamp(1, members.len());
        members[..keep].iter().for_each(|&i| confident[i] = true);
    }
    confident
}

/// `x / ‖x‖` per row, leaving zero rows at zero.
fn normalise_rows(x: &mut [f32], d: usize) {
    for row in x.chunks_exact_mut(d) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|v| *v /= n);
        }
    }
}

/// Normalised per-cluster means of `z [N, d]`; a cluster with no member
/// keeps its row of `fallback`.
fn cluster_means(z: &[f32], labels: &[usize], k: usize, d: usize, fallback: &[f32]) -> Vec<f32> {
    let mut sum = vec![0.0f32; k * d];
    let mut count = vec![0usize; k];
    for (row, &l) in z.chunks_exact(d).zip(labels) {
        count[l] += 1;
        sum[l * d..(l + 1) * d]
            .iter_mut()
            .zip(row)
            .for_each(|(s, v)| *s += v);
    }
    for c in 0..k {
        if count[c] == 0 {
            sum[c * d..(c + 1) * d].copy_from_slice(&fallback[c * d..(c + 1) * d]);
        }
    }
    normalise_rows(&mut sum, d);
    sum
}

impl<B: Backend> ClusterState<B> {
    /// Clusters `input.space [N, d]` (the training set's embeddings in the
    /// configured clustering space) into `kmeans_cfg.k` groups, matching the
    /// previous round's identities when there is one; sets the prototypes of
    /// all three modalities from `input.modalities`, and records the round.
    pub fn recluster(
        previous: Option<Self>,
        backend: &B,
        input: &RoundInput<'_>,
        dim: usize,
        kmeans_cfg: &KMeansConfig,
        epoch: usize,
    ) -> Result<Self> {
        let (z, truth) = (input.modalities, input.truth);
        let k = kmeans_cfg.k;
        let n = input.space.len() / dim.max(1);
        if n < k || k == 0 {
            return Err(Error::invalid(
                "clustering",
                format!("{n} training clips cannot form {k} clusters"),
            ));
        }
        let data = Tensor::from_host(backend, &[n, dim], input.space)?;
        let result = kmeans(backend, &data, kmeans_cfg)?;
        let raw: Vec<usize> = result
            .labels
            .to_host(backend)?
            .iter()
            .map(|&l| l as usize)
            .collect();
        let mut centroids = result.centroids.to_host(backend)?;
        normalise_rows(&mut centroids, dim);

        // Keep identities: new cluster c becomes old cluster perm[c].
        let perm: Vec<usize> = match &previous {
            Some(prev) if prev.k == k => {
                let mut score = vec![0.0f64; k * k];
                for (c, row) in centroids.chunks_exact(dim).enumerate() {
                    for (o, old) in prev.centroids.chunks_exact(dim).enumerate() {
                        score[c * k + o] = row
                            .iter()
                            .zip(old)
                            .map(|(a, b)| f64::from(a * b))
                            .sum::<f64>()
                            + 1.0;
                    }
                }
                max_score_assignment(&score, k, k)
                    .into_iter()
                    .enumerate()
                    .map(|(c, o)| o.unwrap_or(c))
                    .collect()
            }
            _ => (0..k).collect(),
        };
        let labels: Vec<usize> = raw.iter().map(|&l| perm[l]).collect();
        let mut matched = vec![0.0f32; k * dim];
        for (c, row) in centroids.chunks_exact(dim).enumerate() {
            matched[perm[c] * dim..(perm[c] + 1) * dim].copy_from_slice(row);
        }

        let mut sizes = vec![0usize; k];
        labels.iter().for_each(|&l| sizes[l] += 1);
        let size_entropy = if k > 1 {
            sizes
                .iter()
                .filter(|&&s| s > 0)
                .map(|&s| {
                    let p = s as f64 / n as f64;
                    -p * p.ln()
                })
                .sum::<f64>()
                / (k as f64).ln()
        } else {
            1.0
        };
        let confident =
            confident_members(input.space, &labels, &matched, k, dim, input.keep_fraction);
        let kept: Vec<usize> = (0..n).filter(|&i| confident[i]).collect();
        let confident_accuracy = truth.filter(|_| !kept.is_empty()).map(|t| {
            let l: Vec<usize> = kept.iter().map(|&i| labels[i]).collect();
            let tt: Vec<usize> = kept.iter().map(|&i| t[i]).collect();
            hungarian_accuracy(&l, &tt)
        });
        let stability = previous.as_ref().map(|p| {
            p.labels.iter().zip(&labels).filter(|(a, b)| a == b).count() as f64 / n as f64
        });
        let round = ClusterRound {
            epoch,
            inertia: result.inertia[0],
            size_entropy,
            stability,
            nmi: truth.map(|t| nmi(&labels, t)),
            ari: truth.map(|t| ari(&labels, t)),
            accuracy: truth.map(|t| hungarian_accuracy(&labels, t)),
            purity: truth.map(|t| purity(&labels, t)),
            confident_fraction: Some(kept.len() as f64 / n as f64),
            confident_accuracy,
        };

        let prototypes = [0, 1, 2].map(|m| cluster_means(z[m], &labels, k, dim, &matched));
        let (weights, mut rounds) = match previous {
            Some(p) if p.k == k => (p.weights, p.rounds),
            Some(p) => (vec![1.0; k * k], p.rounds),
            None => (vec![1.0; k * k], Vec::new()),
        };
        rounds.push(round);
        Self::assemble(
            backend, k, dim, labels, confident, matched, prototypes, weights, rounds,
        )
    }

    /// Builds the state and its backend copies.
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        backend: &B,
        k: usize,
        dim: usize,
        labels: Vec<usize>,
        confident: Vec<bool>,
        centroids: Vec<f32>,
        prototypes: [Vec<f32>; 3],
        weights: Vec<f32>,
        rounds: Vec<ClusterRound>,
    ) -> Result<Self> {
        let upload = |p: &Vec<f32>| Tensor::from_host(backend, &[k, dim], p);
        let prototype_tensors = [
            upload(&prototypes[0])?,
            upload(&prototypes[1])?,
            upload(&prototypes[2])?,
        ];
        Ok(ClusterState {
            k,
            dim,
            labels,
            confident,
            centroids,
            weight_tensor: Tensor::from_host(backend, &[k, k], &weights)?,
            confusion: Tensor::zeros(backend, &[k, k])?,
            prototypes,
            prototype_tensors,
            weights,
            rounds,
        })
    }

    /// Number of clusters.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The prototypes of modality `m` (0 audio, 1 video, 2 fused), on the backend.
    pub fn prototypes(&self, m: usize) -> &Tensor<B> {
        &self.prototype_tensors[m]
    }

    /// W on the backend.
    pub fn weight_tensor(&self) -> &Tensor<B> {
        &self.weight_tensor
    }

    /// What the confusion-aware loss reads and writes: the fused
    /// prototypes, W, and the epoch's soft-confusion accumulator.
    pub fn confusion_inputs(&mut self) -> (&Tensor<B>, &Tensor<B>, &mut Tensor<B>) {
        (
            &self.prototype_tensors[2],
            &self.weight_tensor,
            &mut self.confusion,
        )
    }

    /// The latest round, if any.
    pub fn last_round(&self) -> Option<&ClusterRound> {
        self.rounds.last()
    }

    /// Pseudo-labels of the clips `idx`, f32-encoded on the backend.
    pub fn batch_labels(&self, backend: &B, idx: &[usize]) -> Result<Tensor<B>> {
        let l: Vec<f32> = idx.iter().map(|&i| self.labels[i] as f32).collect();
        Tensor::from_host(backend, &[idx.len()], &l)
    }

    /// EMA step of the prototypes with a batch's embeddings `z[m] [b, d]`
    /// (host values; stop-gradient): `μ_k ← normalise(m·μ_k + (1−m)·mean_k)`
    /// for every cluster present in the batch.
    pub fn ema_update(
        &mut self,
        backend: &B,
        idx: &[usize],
        z: [&[f32]; 3],
        momentum: f32,
    ) -> Result<()> {
        let (k, d) = (self.k, self.dim);
        for (m, zm) in z.iter().enumerate() {
            let mut sum = vec![0.0f32; k * d];
            let mut count = vec![0usize; k];
            for (row, &i) in zm.chunks_exact(d).zip(idx) {
                let l = self.labels[i];
                count[l] += 1;
                sum[l * d..(l + 1) * d]
                    .iter_mut()
                    .zip(row)
                    .for_each(|(s, v)| *s += v);
            }
            let proto = &mut self.prototypes[m];
            for c in (0..k).filter(|&c| count[c] > 0) {
                let inv = 1.0 / count[c] as f32;
                let row = &mut proto[c * d..(c + 1) * d];
                row.iter_mut()
                    .zip(&sum[c * d..(c + 1) * d])
                    .for_each(|(p, s)| *p = momentum * *p + (1.0 - momentum) * s * inv);
                normalise_rows(row, d);
            }
            self.prototype_tensors[m] = Tensor::from_host(backend, &[k, d], proto)?;
        }
        Ok(())
    }

    /// Epoch end (§3.5–3.6): turns the accumulated confusion into W with
    /// boost `beta` and EMA factor `gamma`, uploads W and clears the
    /// accumulator. Returns the confusion matrix that was used.
    pub fn end_epoch(&mut self, backend: &B, beta: f32, gamma: f32) -> Result<Vec<f32>> {
        let c = self.confusion.to_host(backend)?;
        if c.iter().any(|v| *v > 0.0) {
            update_weights(&mut self.weights, &c, self.k, beta, gamma)?;
            self.weight_tensor = Tensor::from_host(backend, &[self.k, self.k], &self.weights)?;
        }
        self.confusion = Tensor::zeros(backend, &[self.k, self.k])?;
        Ok(c)
    }

    /// The host state a checkpoint needs: labels, centroids, the three
    /// prototype sets and W, as flat vectors.
    pub fn export(&self) -> ClusterSnapshot {
        ClusterSnapshot {
            k: self.k,
            dim: self.dim,
            labels: self.labels.clone(),
            confident: self.confident.clone(),
            centroids: self.centroids.clone(),
            prototypes: self.prototypes.clone(),
            weights: self.weights.clone(),
            rounds: self.rounds.clone(),
        }
    }

    /// Rebuilds the state from a checkpoint's snapshot.
    pub fn restore(backend: &B, s: ClusterSnapshot) -> Result<Self> {
        let ok = s.centroids.len() == s.k * s.dim
            && s.weights.len() == s.k * s.k
            && s.prototypes.iter().all(|p| p.len() == s.k * s.dim)
            && s.labels.iter().all(|&l| l < s.k)
            && (s.confident.is_empty() || s.confident.len() == s.labels.len());
        if !ok {
            return Err(Error::invalid(
                "checkpoint",
                "cluster state has inconsistent sizes",
            ));
        }
        // Checkpoints from before confidence selection trained on every clip.
        let confident = if s.confident.is_empty() {
            vec![true; s.labels.len()]
        } else {
            s.confident
        };
        Self::assemble(
            backend,
            s.k,
            s.dim,
            s.labels,
            confident,
            s.centroids,
            s.prototypes,
            s.weights,
            s.rounds,
        )
    }
}

/// Serializable cluster state (see [`ClusterState::export`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    /// Clusters.
    pub k: usize,
    /// Embedding width.
    pub dim: usize,
    /// Pseudo-label per training clip.
    pub labels: Vec<usize>,
    /// Confident-member flag per training clip (empty in older checkpoints:
    /// every clip).
    #[serde(default)]
    pub confident: Vec<bool>,
    /// Normalised centroids `[K, d]` of the last round.
    pub centroids: Vec<f32>,
    /// Prototypes `[K, d]` for audio, video, fused.
    pub prototypes: [Vec<f32>; 3],
    /// W `[K, K]`.
    pub weights: Vec<f32>,
    /// Every round so far.
    pub rounds: Vec<ClusterRound>,
}
