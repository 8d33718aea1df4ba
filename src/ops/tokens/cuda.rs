//! Token layout on the GPU (kernels/tokens.cu): mean pooling, token-range
//! copies and the (un)patchify permutation, each a grid-stride loop over its
//! output elements.

use crate::backend::cuda_kernels::{KernelId, ids};
use cudarc::driver::{CudaSlice, PushKernelArg};

use crate::backend::cuda::{BLOCK, CudaBackend, check_len, driver_err, flat_grid, int};
use crate::error::{Error, Result};
use crate::ops::tokens::kernels::{PatchSpec, TokenBlock, TokenKernels};

/// The kernels' seven integer parameters of a patch spec, in order.
fn patch_args(op: &'static str, s: &PatchSpec) -> Result<[i32; 7]> {
    int(op, "clip elements", s.numel())?;
    Ok([
        int(op, "batch", s.batch)?,
        int(op, "frames", s.frames)?,
        int(op, "channels", s.channels)?,
        int(op, "height", s.height)?,
        int(op, "width", s.width)?,
        int(op, "tubelet", s.tubelet)?,
        int(op, "patch", s.patch)?,
    ])
}

impl CudaBackend {
    /// `patchify_f32` or `unpatchify_add_f32`: `input` → `output`, both of
    /// the clip's element count.
    fn permute_patches(
        &self,
        k: KernelId,
        spec: &PatchSpec,
        input: &CudaSlice<f32>,
        output: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let args = patch_args(k.name, spec)?;
        let f = self.function(k)?;
        let cfg = self.config(&f, k.name, flat_grid(spec.numel()), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(input);
        for a in &args {
            l.arg(a);
        }
        l.arg(output);
        // SAFETY: input and output hold the clip's numel floats (checked
        // by the callers); the spec was validated, so every index the
        // permutation forms is below numel.
        unsafe { l.launch(cfg) }.map_err(driver_err(k.name))?;
        Ok(())
    }
}

impl TokenKernels for CudaBackend {
    fn mean_tokens(
        &self,
        batch: usize,
        tokens: usize,
        width: usize,
        x: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const OP: &str = "mean_tokens";
        const K: KernelId = ids::tokens::MEAN_TOKENS_F32;
        if tokens == 0 {
            return Err(Error::invalid(OP, "mean over zero tokens"));
        }
        check_len(OP, "x", x, batch * tokens * width)?;
        check_len(OP, "out", out, batch * width)?;
        if width == 0 || batch == 0 {
            return Ok(());
        }
        int(OP, "batch·tokens·width", batch * tokens * width)?;
        let (b, t, w) = (
            int(OP, "batch", batch)?,
            int(OP, "tokens", tokens)?,
            int(OP, "width", width)?,
        );
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, flat_grid(batch * width), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(x).arg(&b).arg(&t).arg(&w).arg(out);
        // SAFETY: x holds batch·tokens·width floats and out batch·width.
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(())
    }

    fn mean_tokens_backward(
        &self,
        batch: usize,
        tokens: usize,
        width: usize,
        grad_out: &CudaSlice<f32>,
        grad_x: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const OP: &str = "mean_tokens_backward";
        const K: KernelId = ids::tokens::MEAN_TOKENS_BWD_F32;
        if tokens == 0 {
            return Err(Error::invalid(OP, "mean over zero tokens"));
        }
        let n = batch * tokens * width;
        check_len(OP, "grad_out", grad_out, batch * width)?;
        check_len(OP, "grad_x", grad_x, n)?;
        if n == 0 {
            return Ok(());
        }
        int(OP, "batch·tokens·width", n)?;
        let (b, t, w) = (
            int(OP, "batch", batch)?,
            int(OP, "tokens", tokens)?,
            int(OP, "width", width)?,
        );
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, flat_grid(n), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(grad_out).arg(&b).arg(&t).arg(&w).arg(grad_x);
        // SAFETY: grad_out holds batch·width floats and grad_x n.
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(())
    }

    fn copy_tokens(
        &self,
        block: &TokenBlock,
        accumulate: bool,
        src: &CudaSlice<f32>,
        dst: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const OP: &str = "copy_tokens";
        const K: KernelId = ids::tokens::COPY_TOKENS_F32;
        let TokenBlock {
            batch,
            width,
            src_tokens,
            src_start,
            dst_tokens,
            dst_start,
            len,
        } = *block;
        if src_start + len > src_tokens || dst_start + len > dst_tokens {
            return Err(Error::invalid(
                OP,
                format!(
                    "tokens {src_start}..{} of {src_tokens} to {dst_start}..{} of {dst_tokens}",
                    src_start + len,
                    dst_start + len
                ),
            ));
        }
        let (need_src, need_dst) = block.required_lengths();
        check_len(OP, "src", src, need_src)?;
        check_len(OP, "dst", dst, need_dst)?;
        let span = len * width;
        if span == 0 || batch == 0 {
            return Ok(());
        }
        int(OP, "source elements", need_src)?;
        int(OP, "destination elements", need_dst)?;
        let args = [
            int(OP, "batch", batch)?,
            int(OP, "width", width)?,
            int(OP, "src_tokens", src_tokens)?,
            int(OP, "src_start", src_start)?,
            int(OP, "dst_tokens", dst_tokens)?,
            int(OP, "dst_start", dst_start)?,
            int(OP, "len", len)?,
            i32::from(accumulate),
        ];
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, flat_grid(batch * span), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(src);
        for a in &args {
            l.arg(a);
        }
        l.arg(dst);
        // SAFETY: the ranges lie inside their token counts (checked above)
        // and src / dst hold batch·tokens·width floats of their layouts.
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(())
    }

    fn patchify(
        &self,
        spec: &PatchSpec,
        x: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        spec.validate("patchify")?;
        let n = spec.numel();
        check_len("patchify", "x", x, n)?;
        check_len("patchify", "out", out, n)?;
        if n == 0 {
            return Ok(());
        }
        self.permute_patches(ids::tokens::PATCHIFY_F32, spec, x, out)
    }

    fn unpatchify_add(
        &self,
        spec: &PatchSpec,
        patches: &CudaSlice<f32>,
        x: &mut CudaSlice<f32>,
    ) -> Result<()> {
        spec.validate("unpatchify_add")?;
        let n = spec.numel();
        check_len("unpatchify_add", "patches", patches, n)?;
        check_len("unpatchify_add", "x", x, n)?;
        if n == 0 {
            return Ok(());
        }
        self.permute_patches(ids::tokens::UNPATCHIFY_ADD_F32, spec, patches, x)
    }
}
