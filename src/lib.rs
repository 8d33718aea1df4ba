//! diccae-engine: self-supervised audio-visual representation learning with
//! hand-written kernels and a small tape autograd.
//!
//! Layers, bottom up: [`backend`] (memory and kernels per device),
//! [`tensor`], [`autograd`] (tape and parameters), [`ops`] (differentiable
//! ops), [`optim`] (AdamW and schedules).

pub mod autograd;
pub mod backend;
pub mod data;
pub mod error;
pub mod gradcheck;
pub mod ops;
pub mod optim;
pub mod rng;
pub mod tensor;

pub use error::{Error, Result};
