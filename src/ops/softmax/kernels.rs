//! Softmax over the last dimension of a row-major matrix.

use crate::backend::BackendCore;
use crate::error::Result;

/// Row-wise softmax, forward and backward.
pub trait SoftmaxKernels: BackendCore {
    /// `y[r] = softmax(x[r])` for each of `rows` rows of `cols` elements,
    /// computed stably (shifted by the row maximum).
    fn softmax_fwd(&self, rows: usize, cols: usize, x: &Self::Buf, y: &mut Self::Buf)
    -> Result<()>;

    /// Adds `y ∘ (dy − Σ dy∘y)` (row sums) into `dx`: the gradient of the
    /// input given the forward output `y` and the output's gradient `dy`.
    fn softmax_bwd(
        &self,
        rows: usize,
        cols: usize,
        y: &Self::Buf,
        dy: &Self::Buf,
        dx: &mut Self::Buf,
    ) -> Result<()>;
}
