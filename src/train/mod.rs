//! Pretraining: the in-memory dataset, the cluster state of DICCAE and the
//! training loop.

pub mod ablate;
pub mod clusters;
pub mod diccae_terms;
pub mod embed;
pub mod evaluate;
pub mod export;
pub mod features;
pub mod metrics;
pub mod summary;
pub mod trainer;
