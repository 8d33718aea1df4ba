//! Optimisation: AdamW, gradient-norm clipping, the learning-rate schedule
//! and loss-weight ramps.

mod adamw;
mod clip;
mod schedule;

pub use adamw::{AdamW, AdamWConfig};
pub use clip::clip_grad_norm;
pub use schedule::{WarmupCosine, ramp};
