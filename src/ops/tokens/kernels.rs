//! Token layout: mean pooling over tokens, copies of token ranges (concat,
//! narrow) and patch / tubelet extraction (patchify) with its inverse scatter.
//!
//! Token tensors are row-major `[batch, tokens, width]`.

use crate::backend::BackendCore;
use crate::error::{Error, Result};

/// A range of tokens copied between two token tensors of the same batch and
/// width: for every batch entry, tokens `src_start..src_start + len` of the
/// source (`[batch, src_tokens, width]`) go to tokens
/// `dst_start..dst_start + len` of the destination (`[batch, dst_tokens, width]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBlock {
    /// Batch entries.
    pub batch: usize,
    /// Elements per token.
    pub width: usize,
    /// Tokens per batch entry in the source.
    pub src_tokens: usize,
    /// First source token copied.
    pub src_start: usize,
    /// Tokens per batch entry in the destination.
    pub dst_tokens: usize,
    /// First destination token written.
    pub dst_start: usize,
    /// Tokens copied per batch entry.
    pub len: usize,
}

impl TokenBlock {
    /// Minimum buffer lengths `(src, dst)` this block reads and writes.
    pub fn required_lengths(&self) -> (usize, usize) {
        (
            self.batch * self.src_tokens * self.width,
            self.batch * self.dst_tokens * self.width,
        )
    }
}

/// Non-overlapping tubelets of a clip `[batch, frames, channels, height, width]`:
/// `tubelet` frames × `patch`×`patch` pixels each. The patches tensor is
/// `[batch, num_patches, patch_len]`, patches in grid order (time, row,
/// column), each flattened in (frame, channel, row, column) order.
///
/// A spectrogram `[B, F, T]` is the clip `[B, 1, 1, F, T]` with `tubelet = 1`.
/// Every extent must be a multiple of its patch size (ops check this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatchSpec {
    /// Batch entries.
    pub batch: usize,
    /// Frames per clip.
    pub frames: usize,
    /// Channels per frame.
    pub channels: usize,
    /// Pixel rows per frame.
    pub height: usize,
    /// Pixel columns per frame.
    pub width: usize,
    /// Frames per tubelet.
    pub tubelet: usize,
    /// Pixels per patch side.
    pub patch: usize,
}

impl PatchSpec {
    /// Checks that the sizes are positive and every extent is a multiple of
    /// its patch size (kernels rely on it).
    pub fn validate(&self, op: &'static str) -> Result<()> {
        if self.tubelet == 0 || self.patch == 0 {
            return Err(Error::invalid(
                op,
                format!(
                    "tubelet {} and patch {} must be positive",
                    self.tubelet, self.patch
                ),
            ));
        }
        if !self.frames.is_multiple_of(self.tubelet)
            || !self.height.is_multiple_of(self.patch)
            || !self.width.is_multiple_of(self.patch)
        {
            return Err(Error::shape(
                op,
                format!(
                    "{} frames of {}x{} do not split into {}-frame tubelets of {}x{} patches",
                    self.frames, self.height, self.width, self.tubelet, self.patch, self.patch
                ),
            ));
        }
        Ok(())
    }

    /// Patch-grid extents `(time, rows, columns)`.
    pub fn grid(&self) -> (usize, usize, usize) {
        (
            self.frames / self.tubelet,
            self.height / self.patch,
            self.width / self.patch,
        )
    }

    /// Patches per batch entry.
    pub fn num_patches(&self) -> usize {
        let (gt, gr, gc) = self.grid();
        gt * gr * gc
    }

    /// Elements per patch: `tubelet · channels · patch · patch`.
    pub fn patch_len(&self) -> usize {
        self.tubelet * self.channels * self.patch * self.patch
    }

    /// Elements of the clip (and of the patches tensor: patchify permutes).
    pub fn numel(&self) -> usize {
        self.batch * self.frames * self.channels * self.height * self.width
    }
}

/// Token-layout kernels.
pub trait TokenKernels: BackendCore {
    /// `out[b, :] = mean_t x[b, t, :]` for `x [batch, tokens, width]`,
    /// `out [batch, width]` (overwritten).
    fn mean_tokens(
        &self,
        batch: usize,
        tokens: usize,
        width: usize,
        x: &Self::Buf,
        out: &mut Self::Buf,
    ) -> Result<()>;

    /// Backward of [`TokenKernels::mean_tokens`]:
    /// `grad_x[b, t, :] += grad_out[b, :] / tokens`.
    fn mean_tokens_backward(
        &self,
        batch: usize,
        tokens: usize,
        width: usize,
        grad_out: &Self::Buf,
        grad_x: &mut Self::Buf,
    ) -> Result<()>;

    /// Copies (or, with `accumulate`, adds) the token range described by
    /// `block` from `src` into `dst`; the rest of `dst` is left as it is.
    fn copy_tokens(
        &self,
        block: &TokenBlock,
        accumulate: bool,
        src: &Self::Buf,
        dst: &mut Self::Buf,
    ) -> Result<()>;

    /// Gathers the clip `x` into its patches `out` (overwritten); see [`PatchSpec`].
    fn patchify(&self, spec: &PatchSpec, x: &Self::Buf, out: &mut Self::Buf) -> Result<()>;

    /// The inverse scatter of [`TokenKernels::patchify`], added into the clip:
    /// `x += unpatchify(patches)` (patchify's backward).
    fn unpatchify_add(
        &self,
        spec: &PatchSpec,
        patches: &Self::Buf,
        x: &mut Self::Buf,
    ) -> Result<()>;
}
