//! Dense matrix products.

use crate::backend::BackendCore;
use crate::error::Result;

/// A (batched) row-major matrix product `C = alpha·op(A)·op(B) + beta·C`.
///
/// `op(A)` is `m×k`: A is stored `m×k`, or `k×m` when `trans_a`.
/// `op(B)` is `k×n`: B is stored `k×n`, or `n×k` when `trans_b`.
/// Batch `i` reads A at offset `i·stride_a`, B at `i·stride_b`, and writes C
/// at `i·stride_c`; a stride of 0 broadcasts that operand over the batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmSpec {
    /// Number of independent products.
    pub batch: usize,
    /// Rows of `op(A)` and `C`.
    pub m: usize,
    /// Columns of `op(B)` and `C`.
    pub n: usize,
    /// The contracted dimension.
    pub k: usize,
    /// A is stored transposed.
    pub trans_a: bool,
    /// B is stored transposed.
    pub trans_b: bool,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the existing C (0 overwrites, 1 accumulates).
    pub beta: f32,
    /// Elements between consecutive A matrices (0 = broadcast).
    pub stride_a: usize,
    /// Elements between consecutive B matrices (0 = broadcast).
    pub stride_b: usize,
    /// Elements between consecutive C matrices.
    pub stride_c: usize,
}

impl GemmSpec {
    /// A single `m×k · k×n` product that overwrites C.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        GemmSpec {
            batch: 1,
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            alpha: 1.0,
            beta: 0.0,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
        }
    }

    /// Same spec with transposition flags.
    pub fn transposed(mut self, trans_a: bool, trans_b: bool) -> Self {
        self.trans_a = trans_a;
        self.trans_b = trans_b;
        self
    }

    /// Same spec with `beta` (1.0 accumulates into C).
    pub fn beta(mut self, beta: f32) -> Self {
        self.beta = beta;
        self
    }

    /// Same spec repeated over `batch` matrices with the given strides.
    pub fn batched(
        mut self,
        batch: usize,
        stride_a: usize,
        stride_b: usize,
        stride_c: usize,
    ) -> Self {
        self.batch = batch;
        self.stride_a = stride_a;
        self.stride_b = stride_b;
        self.stride_c = stride_c;
        self
    }

    /// Minimum buffer lengths `(a, b, c)` this spec reads and writes.
    pub fn required_lengths(&self) -> (usize, usize, usize) {
        let last = self.batch.saturating_sub(1);
        (
            last * self.stride_a + self.m * self.k,
            last * self.stride_b + self.k * self.n,
            last * self.stride_c + self.m * self.n,
        )
    }
}

/// Matrix products.
pub trait MatmulKernels: BackendCore {
    /// Runs the product described by `spec`.
    fn gemm(&self, spec: &GemmSpec, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf) -> Result<()>;
}
