//! Fused multi-head self-attention (flash-style): `softmax(Q·Kᵀ·scale)·V`
//! per head without materialising a head's `S×S` score matrix.

use crate::backend::BackendCore;
use crate::error::Result;

/// Dimensions of one fused attention call.
///
/// The input `qkv` is `[batch, seq, 3·heads·head_dim]`, exactly as a linear
/// layer produces it: for each token, the queries of all heads, then the
/// keys of all heads, then the values of all heads; head `h` uses columns
/// `h·head_dim..(h+1)·head_dim` of each third. The output is
/// `[batch, seq, heads·head_dim]` (heads concatenated) and the saved
/// log-sum-exp is `[batch, heads, seq]`. Every token attends to every token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionSpec {
    /// Independent sequences.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of one head's query, key and value.
    pub head_dim: usize,
}

impl AttentionSpec {
    /// Output width per token: `heads·head_dim`.
    pub fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Elements of `qkv` (and of its gradient).
    pub fn qkv_len(&self) -> usize {
        self.batch * self.seq * 3 * self.width()
    }

    /// Elements of the output (and of its gradient).
    pub fn out_len(&self) -> usize {
        self.batch * self.seq * self.width()
    }

    /// Elements of the saved log-sum-exp: one per (batch, head, query).
    pub fn lse_len(&self) -> usize {
        self.batch * self.heads * self.seq
    }

    /// The score scale `1/sqrt(head_dim)`.
    pub fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// Fused self-attention, forward and backward.
pub trait AttentionKernels: BackendCore {
    /// Writes the attention output into `out` (`spec.out_len()` elements)
    /// and the log-sum-exp of each query's scaled scores into `lse`
    /// (`spec.lse_len()` elements, `[batch, heads, seq]`).
    fn attention_fwd(
        &self,
        spec: &AttentionSpec,
        qkv: &Self::Buf,
        out: &mut Self::Buf,
        lse: &mut Self::Buf,
    ) -> Result<()>;

    /// Adds the gradient with respect to `qkv` into `grad_qkv` (same packed
    /// layout), given the forward's `qkv`, `out` and `lse` and the output's
    /// gradient `grad_out`. Recomputes the attention weights tile by tile
    /// from `lse`.
    fn attention_bwd(
        &self,
        spec: &AttentionSpec,
        qkv: &Self::Buf,
        out: &Self::Buf,
        lse: &Self::Buf,
        grad_out: &Self::Buf,
        grad_qkv: &mut Self::Buf,
    ) -> Result<()>;
}
