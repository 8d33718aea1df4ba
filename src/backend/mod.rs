//! The backend seam: what a device must provide for the engine to run on it.
//!
//! A backend owns device memory (`Buf`): [`BackendCore`] is allocation, host
//! transfer and the vector primitives the tape and optimiser need. Each op
//! family's kernel trait lives with the op (`crate::ops::<op>::kernels`) and
//! is implemented for each backend there; `crate::ops::Backend` is their
//! sum. A training step runs entirely on the backend's memory; the only host
//! copies are the ones a caller asks for with [`BackendCore::download`]
//! (logging a scalar, writing a checkpoint).
//!
//! The CPU backend ([`cpu::CpuBackend`]) is always built. A CUDA backend fills
//! the same traits with kernel launches.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod cuda_kernels;

use crate::error::Result;

/// Memory management every backend provides: allocation, host transfer and
/// the few vector primitives the tape and optimiser need.
pub trait BackendCore: Clone + Send + Sync + 'static {
    /// One contiguous f32 buffer in the backend's memory.
    type Buf: Send + Sync + 'static;

    /// A short human-readable name ("cpu", "cuda:0").
    fn name(&self) -> String;
    /// A buffer of `len` zeros.
    fn zeros(&self, len: usize) -> Result<Self::Buf>;
    /// Copies host data into a new buffer.
    fn upload(&self, host: &[f32]) -> Result<Self::Buf>;
    /// Copies a buffer back to the host.
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>>;
    /// Number of f32 elements in a buffer.
    fn len(&self, buf: &Self::Buf) -> usize;
    /// A copy of a buffer.
    fn duplicate(&self, buf: &Self::Buf) -> Result<Self::Buf>;
    /// Sets every element to `value`.
    fn fill(&self, buf: &mut Self::Buf, value: f32) -> Result<()>;
    /// `y += alpha * x` (gradient accumulation).
    fn axpy(&self, alpha: f32, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// `x *= alpha`.
    fn scale(&self, alpha: f32, x: &mut Self::Buf) -> Result<()>;
    /// Sum of squares, accumulated in f64 and returned to the host (a scalar).
    fn sum_squares(&self, x: &Self::Buf) -> Result<f64>;
}
