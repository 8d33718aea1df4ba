//! Optimisation: AdamW, gradient-norm clipping and the learning-rate schedule.

mod adamw;
mod clip;
mod schedule;

pub use adamw::{AdamW, AdamWConfig};
pub use clip::clip_grad_norm;
pub use schedule::WarmupCosine;
