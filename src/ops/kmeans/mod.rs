//! The k-means kernel family (assignment and centroid update), used by
//! `crate::kmeans` (no gradient): its trait, the CPU and CUDA implementations.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod kernels;
