//! Batched k-means steps (METHOD.md §3.2, §6.2) over `p` independent problems
//! per call (restarts, modalities): `data [p,n,d]`, `centroids [p,k,d]`.
//!
//! Labels are cluster indices encoded as f32 (exact up to 2^24), the same
//! encoding the class-alignment loss reads, so pseudo-labels stay on the
//! device.

use crate::backend::BackendCore;
use crate::error::Result;

/// Sizes of one batched k-means step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KMeansSpec {
    /// Independent problems.
    pub problems: usize,
    /// Points per problem.
    pub n: usize,
    /// Clusters per problem.
    pub k: usize,
    /// Dimension.
    pub d: usize,
}

/// The two Lloyd steps.
pub trait KMeansKernels: BackendCore {
    /// Assignment: for every point, the nearest centroid (distances
    /// `‖x‖² − 2x·c + ‖c‖²` through GEMM tiles with a fused arg-min, ties to
    /// the lowest index; the full n×k matrix is never formed). Writes
    /// `labels [p,n]` and `min_dist [p,n]`, the squared distance to the chosen
    /// centroid computed directly as `‖x − c‖²` (no cancellation).
    fn kmeans_assign(
        &self,
        spec: &KMeansSpec,
        data: &Self::Buf,
        centroids: &Self::Buf,
        labels: &mut Self::Buf,
        min_dist: &mut Self::Buf,
    ) -> Result<()>;

    /// Update: per-cluster sums of the assigned points `sums [p,k,d]` and
    /// counts `counts [p,k]` (overwritten), as a segmented reduction. The
    /// result does not depend on the number of threads.
    fn kmeans_update(
        &self,
        spec: &KMeansSpec,
        data: &Self::Buf,
        labels: &Self::Buf,
        sums: &mut Self::Buf,
        counts: &mut Self::Buf,
    ) -> Result<()>;
}
