//! Pretraining: the in-memory dataset, the objectives (DICCAE with its
//! cluster state, AVCL), the training loop, checkpoints of a run and its
//! evaluation.

pub mod ablate;
pub mod clusters;
pub mod console;
pub mod diccae_terms;
pub mod embed;
pub mod eval_checkpoint;
pub mod evaluate;
pub mod export;
pub mod features;
pub mod logged;
pub mod metrics_log;
pub mod objective;
pub mod run_dir;
pub mod run_state;
pub mod summary;
pub mod trainer;
