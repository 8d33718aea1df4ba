//! Elementwise ops: residual and bias adds, scaling, GELU, the logistic
//! sigmoid, and the column sums their backward passes need.
//!
//! Matrices are `rows × d`, row-major: a tensor `[..., d]` viewed with every
//! leading dim folded into the rows.

use crate::backend::BackendCore;
use crate::error::Result;

/// Elementwise kernels. Every method returns a new buffer and overwrites
/// nothing; the caller (an op) has checked the lengths.
pub trait ElementwiseKernels: BackendCore {
    /// `a + b`, elementwise, for buffers of equal length.
    fn add(&self, a: &Self::Buf, b: &Self::Buf) -> Result<Self::Buf>;

    /// `c·x`, elementwise.
    fn scaled(&self, x: &Self::Buf, c: f32) -> Result<Self::Buf>;

    /// `out[r, j] = x[r, j] + row[j]` for `x` of `rows × d` and `row` of `d`
    /// (bias add, and a per-sample embedding added to every batch entry).
    fn add_row(&self, x: &Self::Buf, row: &Self::Buf, rows: usize, d: usize) -> Result<Self::Buf>;

    /// Column sums `out[j] = Σ_r x[r, j]` of a `rows × d` matrix (the
    /// gradient of [`ElementwiseKernels::add_row`]'s `row`). The order of
    /// summation depends only on the shape, so results are reproducible.
    fn sum_rows(&self, x: &Self::Buf, rows: usize, d: usize) -> Result<Self::Buf>;

    /// GELU, tanh approximation: `½·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
    fn gelu_fwd(&self, x: &Self::Buf) -> Result<Self::Buf>;

    /// `grad_out · gelu'(x)`, with the exact derivative of the tanh
    /// approximation that [`ElementwiseKernels::gelu_fwd`] computes.
    fn gelu_bwd(&self, x: &Self::Buf, grad_out: &Self::Buf) -> Result<Self::Buf>;

    /// The logistic sigmoid `σ(x) = 1 / (1 + e^(−x))`, elementwise (0 and 1
    /// in the limits, never NaN for finite or infinite `x`).
    fn sigmoid_fwd(&self, x: &Self::Buf) -> Result<Self::Buf>;

    /// `grad_out · y·(1 − y)` from the forward's output `y = σ(x)`.
    fn sigmoid_bwd(&self, y: &Self::Buf, grad_out: &Self::Buf) -> Result<Self::Buf>;
}
