//! The AdamW update kernel family, used by `crate::optim::AdamW` (no
//! gradient): its trait, the CPU and CUDA implementations.

pub(crate) mod cpu;
#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub mod kernels;
