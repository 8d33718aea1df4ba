//! diccae-engine: self-supervised audio-visual representation learning with
//! hand-written kernels and a small tape autograd.
//!
//! Layers, bottom up: [`backend`] (memory and kernels per device),
//! [`tensor`], [`autograd`] (tape and parameters), [`ops`] (differentiable
//! ops), [`optim`] (AdamW and schedules).

pub mod atomic_file;
pub mod autograd;
pub mod backend;
pub mod checkpoint;
pub mod config;
pub mod confusion;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod fault;
pub mod gradcheck;
pub mod kmeans;
pub mod model;
pub mod ops;
pub mod optim;
pub mod reference;
pub mod report;
pub mod rng;
pub mod synthetic;
pub mod tensor;
pub mod train;

pub use error::{Error, Result};
