//! Token-layout kernels on the CPU: gathers and scatters over rows of the
//! destination, in parallel (rayon) once the tensor is large enough to pay.

use rayon::prelude::*;

use crate::backend::cpu::{CpuBackend, PARALLEL_MIN_ELEMS, check_len};
use crate::error::{Error, Result};
use crate::ops::tokens::kernels::{PatchSpec, TokenBlock, TokenKernels};

/// Elements a parallel task should cover at least, so that rayon's splitting
/// does not cost more than the copy itself.
const TASK_GRAIN: usize = 1 << 12;

/// Columns of the mean-pool output one task reduces (its f64 accumulator
/// lives on the stack). Wide, so that a task streams whole token rows:
/// 256-column blocks of 768-wide rows ran about 4× slower.
const MEAN_COLS: usize = 1024;

/// Runs `f(row_index, row)` over `dst` split into rows of `row_len`, on the
/// rayon pool when `dst` is large.
fn for_each_row<F>(dst: &mut [f32], row_len: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Send + Sync,
{
    if row_len == 0 || dst.is_empty() {
        return;
    }
    if dst.len() >= PARALLEL_MIN_ELEMS {
        let min_rows = (TASK_GRAIN / row_len).max(1);
        dst.par_chunks_mut(row_len)
            .enumerate()
            .with_min_len(min_rows)
            .for_each(|(i, row)| f(i, row));
    } else {
        dst.chunks_mut(row_len)
            .enumerate()
            .for_each(|(i, row)| f(i, row));
    }
}

/// `dst = src` or `dst += src` (equal lengths).
fn copy_or_add(dst: &mut [f32], src: &[f32], accumulate: bool) {
    if accumulate {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
    } else {
        dst.copy_from_slice(src);
    }
}

/// [`copy_or_add`] split into parallel pieces when long.
fn copy_or_add_par(dst: &mut [f32], src: &[f32], accumulate: bool) {
    if dst.len() >= PARALLEL_MIN_ELEMS {
        dst.par_chunks_mut(TASK_GRAIN)
            .zip(src.par_chunks(TASK_GRAIN))
            .for_each(|(d, s)| copy_or_add(d, s, accumulate));
    } else {
        copy_or_add(dst, src, accumulate);
    }
}

/// `out = mean over tokens` of the columns `c0..c0 + out.len()` of batch
/// entry `b`, accumulated in f64 (one conversion per element read).
fn mean_columns(x: &[f32], tokens: usize, width: usize, b: usize, c0: usize, out: &mut [f32]) {
    let mut acc = [0.0f64; MEAN_COLS];
    let acc = &mut acc[..out.len()];
    let first = b * tokens * width + c0;
    for t in 0..tokens {
        let row = &x[first + t * width..][..out.len()];
        acc.iter_mut()
            .zip(row)
            .for_each(|(a, &v)| *a += f64::from(v));
    }
    let inv = 1.0 / tokens as f64;
    out.iter_mut()
        .zip(acc.iter())
        .for_each(|(o, &a)| *o = (a * inv) as f32);
}

impl TokenKernels for CpuBackend {
    fn mean_tokens(
        &self,
        batch: usize,
        tokens: usize,
        width: usize,
        x: &Vec<f32>,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        if tokens == 0 {
            return Err(Error::invalid("mean_tokens", "mean over zero tokens"));
        }
        check_len("mean_tokens", "x", x, batch * tokens * width)?;
        check_len("mean_tokens", "out", out, batch * width)?;
        if width == 0 {
            return Ok(());
        }
        let out = &mut out[..batch * width];
        if batch * tokens * width >= PARALLEL_MIN_ELEMS {
            out.par_chunks_mut(width).enumerate().for_each(|(b, orow)| {
                orow.par_chunks_mut(MEAN_COLS)
                    .enumerate()
                    .for_each(|(j, o)| mean_columns(x, tokens, width, b, j * MEAN_COLS, o));
            });
        } else {
            for (b, orow) in out.chunks_mut(width).enumerate() {
                for (j, o) in orow.chunks_mut(MEAN_COLS).enumerate() {
                    mean_columns(x, tokens, width, b, j * MEAN_COLS, o);
                }
            }
        }
        Ok(())
    }

    fn mean_tokens_backward(
        &self,
        batch: usize,
        tokens: usize,
        width: usize,
        grad_out: &Vec<f32>,
        grad_x: &mut Vec<f32>,
    ) -> Result<()> {
        if tokens == 0 {
            return Err(Error::invalid(
                "mean_tokens_backward",
                "mean over zero tokens",
            ));
        }
        check_len("mean_tokens_backward", "grad_out", grad_out, batch * width)?;
        check_len(
            "mean_tokens_backward",
            "grad_x",
            grad_x,
            batch * tokens * width,
        )?;
        let inv = 1.0 / tokens as f32;
        for_each_row(&mut grad_x[..batch * tokens * width], width, |i, row| {
            let g = &grad_out[(i / tokens) * width..][..width];
            row.iter_mut().zip(g).for_each(|(r, &g)| *r += g * inv);
        });
        Ok(())
    }

    fn copy_tokens(
        &self,
        block: &TokenBlock,
        accumulate: bool,
        src: &Vec<f32>,
        dst: &mut Vec<f32>,
    ) -> Result<()> {
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
                "copy_tokens",
                format!(
                    "tokens {src_start}..{} of {src_tokens} to {dst_start}..{} of {dst_tokens}",
                    src_start + len,
                    dst_start + len
                ),
            ));
        }
        let (need_src, need_dst) = block.required_lengths();
        check_len("copy_tokens", "src", src, need_src)?;
        check_len("copy_tokens", "dst", dst, need_dst)?;
        let span = len * width;
        if span == 0 || batch == 0 {
            return Ok(());
        }
        let run = |b: usize, dst_entry: &mut [f32]| {
            let d = &mut dst_entry[dst_start * width..][..span];
            let s = &src[(b * src_tokens + src_start) * width..][..span];
            copy_or_add_par(d, s, accumulate);
        };
        let dst = &mut dst[..need_dst];
        if batch * span >= PARALLEL_MIN_ELEMS {
            dst.par_chunks_mut(dst_tokens * width)
                .enumerate()
                .for_each(|(b, d)| run(b, d));
        } else {
            dst.chunks_mut(dst_tokens * width)
                .enumerate()
                .for_each(|(b, d)| run(b, d));
        }
        Ok(())
    }

    fn patchify(&self, spec: &PatchSpec, x: &Vec<f32>, out: &mut Vec<f32>) -> Result<()> {
        spec.validate("patchify")?;
        let n = spec.numel();
        check_len("patchify", "x", x, n)?;
        check_len("patchify", "out", out, n)?;
        let PatchSpec {
            frames,
            channels,
            height,
            width,
            tubelet,
            patch: p,
            ..
        } = *spec;
        let (grid_t, grid_r, grid_c) = spec.grid();
        let patch_len = spec.patch_len();
        // One task fills the patches of one grid row (fixed batch entry,
        // tubelet and patch row), contiguous in `out`, reading each clip row
        // it covers front to back and dealing its p-segments to the patches.
        for_each_row(&mut out[..n], grid_c * patch_len, |q, patches| {
            let (b, gt, gr) = (q / (grid_t * grid_r), (q / grid_r) % grid_t, q % grid_r);
            for ti in 0..tubelet {
                for c in 0..channels {
                    let plane = ((b * frames + gt * tubelet + ti) * channels + c) * height;
                    for pi in 0..p {
                        let src = &x[(plane + gr * p + pi) * width..][..width];
                        let seg_off = ((ti * channels + c) * p + pi) * p;
                        for (patch, seg) in
                            patches.chunks_exact_mut(patch_len).zip(src.chunks_exact(p))
                        {
                            patch[seg_off..][..p].copy_from_slice(seg);
                        }
                    }
                }
            }
        });
        Ok(())
    }

    fn unpatchify_add(&self, spec: &PatchSpec, patches: &Vec<f32>, x: &mut Vec<f32>) -> Result<()> {
        spec.validate("unpatchify_add")?;
        let n = spec.numel();
        check_len("unpatchify_add", "patches", patches, n)?;
        check_len("unpatchify_add", "x", x, n)?;
        let PatchSpec {
            frames,
            channels,
            height,
            width,
            tubelet,
            patch: p,
            ..
        } = *spec;
        let (_, grid_r, grid_c) = spec.grid();
        let per_entry = spec.num_patches();
        let patch_len = spec.patch_len();
        // One clip row (fixed batch, frame, channel, pixel row) gathers one
        // p-segment from each patch of its grid row.
        for_each_row(&mut x[..n], width, |q, row| {
            let y = q % height;
            let c = (q / height) % channels;
            let f = (q / (height * channels)) % frames;
            let b = q / (height * channels * frames);
            let (gt, ti) = (f / tubelet, f % tubelet);
            let (gr, pi) = (y / p, y % p);
            let first_patch = b * per_entry + (gt * grid_r + gr) * grid_c;
            let seg_off = ((ti * channels + c) * p + pi) * p;
            for (gc, dst) in row.chunks_exact_mut(p).enumerate() {
                let src = &patches[(first_patch + gc) * patch_len + seg_off..][..p];
                dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
            }
        });
        Ok(())
    }
}
