//! Confusion-weighted class alignment on the CPU: prototype logits of a tile
//! of rows through one serial GEMM, the weighted softmax per row, tiles in
//! parallel with rayon; confusion rows accumulate into per-thread K×K partials
//! that are summed at the end (race-free).

use rayon::prelude::*;

use crate::backend::cpu::{CpuBackend, check_len};
use crate::error::{Error, Result};
use crate::ops::class_align::kernels::{ClassAlignKernels, ClassAlignSpec};
use crate::ops::matmul::cpu::gemm_serial;
use crate::ops::matmul::kernels::GemmSpec;

/// Rows per tile: one GEMM of `ROW_TILE × k` logits per task.
const ROW_TILE: usize = 64;

const OP: &str = "class_align";

/// Decodes an f32-encoded class index, rejecting anything not in `0..k`.
fn decode_label(v: f32, k: usize, row: usize) -> Result<usize> {
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && (v as usize) < k {
        Ok(v as usize)
    } else {
        Err(Error::invalid(
            OP,
            format!("label {v} at row {row} is not a class index in 0..{k}"),
        ))
    }
}

/// Rejects weights that are not finite and positive (the log-normaliser needs
/// every weighted term positive).
fn check_weights(w: &[f32], k: usize) -> Result<()> {
    match w.iter().position(|&x| !(x.is_finite() && x > 0.0)) {
        None => Ok(()),
        Some(i) => Err(Error::invalid(
            OP,
            format!(
                "weight W[{}, {}] = {} must be finite and positive",
                i / k,
                i % k,
                w[i]
            ),
        )),
    }
}

fn check_buffers(
    s: &ClassAlignSpec,
    z: &[f32],
    protos: &[f32],
    labels: &[f32],
    weights: Option<&Vec<f32>>,
) -> Result<()> {
    check_len(OP, "z", z, s.n * s.d)?;
    check_len(OP, "prototypes", protos, s.k * s.d)?;
    check_len(OP, "labels", labels, s.n)?;
    if let Some(w) = weights {
        check_len(OP, "weights", w, s.k * s.k)?;
    }
    Ok(())
}

/// Scaled logits `a = (z_tile·μᵀ)/τ` of one tile into `logits [rows, k]`.
fn tile_logits(s: &ClassAlignSpec, z_tile: &[f32], protos: &[f32], logits: &mut [f32]) {
    let rows = z_tile.len() / s.d.max(1);
    let spec = GemmSpec {
        alpha: s.inv_tau,
        ..GemmSpec::new(rows, s.k, s.d).transposed(false, true)
    };
    gemm_serial(&spec, z_tile, protos, &mut logits[..rows * s.k]);
}

/// Row `y` of W, or `None` for all ones.
fn weight_row(weights: Option<&Vec<f32>>, y: usize, k: usize) -> Option<&[f32]> {
    weights.map(|w| &w[y * k..(y + 1) * k])
}

/// Per-thread forward accumulator.
struct FwdAcc {
    loss: f64,
    confusion: Vec<f32>,
    logits: Vec<f32>,
}

impl ClassAlignKernels for CpuBackend {
    fn class_align_fwd(
        &self,
        s: &ClassAlignSpec,
        z: &Vec<f32>,
        protos: &Vec<f32>,
        labels: &Vec<f32>,
        weights: Option<&Vec<f32>>,
        loss: &mut Vec<f32>,
        lse: &mut Vec<f32>,
        confusion: Option<&mut Vec<f32>>,
    ) -> Result<()> {
        check_buffers(s, z, protos, labels, weights)?;
        check_len(OP, "loss", loss, 1)?;
        check_len(OP, "lse", lse, s.n)?;
        if let Some(c) = confusion.as_deref() {
            check_len(OP, "confusion", c, s.k * s.k)?;
        }
        if let Some(w) = weights {
            check_weights(&w[..s.k * s.k], s.k)?;
        }
        let (k, d) = (s.k, s.d);
        let want_conf = confusion.is_some();
        let conf_len = if want_conf { k * k } else { 0 };
        let (loss_sum, conf) = z[..s.n * d]
            .par_chunks(ROW_TILE * d.max(1))
            .zip(lse[..s.n].par_chunks_mut(ROW_TILE))
            .zip(labels[..s.n].par_chunks(ROW_TILE))
            .enumerate()
            .try_fold(
                || FwdAcc {
                    loss: 0.0,
                    confusion: vec![0.0; conf_len],
                    logits: vec![0.0; ROW_TILE * k],
                },
                |mut acc, (t, ((z_tile, lse_tile), y_tile))| -> Result<FwdAcc> {
                    tile_logits(s, z_tile, protos, &mut acc.logits);
                    for (r, (lse_i, &y_raw)) in lse_tile.iter_mut().zip(y_tile).enumerate() {
                        let y = decode_label(y_raw, k, t * ROW_TILE + r)?;
                        let row = &mut acc.logits[r * k..(r + 1) * k];
                        let a_y = row[y];
                        let m = row.iter().fold(f32::NEG_INFINITY, |m, &a| m.max(a));
                        row.iter_mut().for_each(|a| *a = (*a - m).exp());
                        let z_w = match weight_row(weights, y, k) {
                            Some(w) => {
                                // W[y,y] is read as 1: take the target out of the weighted sum.
                                let e_y = std::mem::replace(&mut row[y], 0.0);
                                let dot: f32 = row.iter().zip(w).map(|(e, w)| e * w).sum();
                                row[y] = e_y;
                                dot + e_y
                            }
                            None => row.iter().sum(),
                        };
                        let l = m + z_w.ln();
                        *lse_i = l;
                        acc.loss += f64::from(l - a_y);
                        if want_conf {
                            let inv = 1.0 / row.iter().sum::<f32>();
                            acc.confusion[y * k..(y + 1) * k]
                                .iter_mut()
                                .zip(row.iter())
                                .for_each(|(c, e)| *c += e * inv);
                        }
                    }
                    Ok(acc)
                },
            )
            .map(|acc| acc.map(|a| (a.loss, a.confusion)))
            .try_reduce(
                || (0.0, vec![0.0; conf_len]),
                |(l1, mut c1), (l2, c2)| {
                    c1.iter_mut().zip(&c2).for_each(|(a, b)| *a += b);
                    Ok((l1 + l2, c1))
                },
            )?;
        loss[0] = (loss_sum / s.n as f64) as f32;
        if let Some(c) = confusion {
            c[..k * k].iter_mut().zip(&conf).for_each(|(c, p)| *c += p);
        }
        Ok(())
    }

    fn class_align_bwd(
        &self,
        s: &ClassAlignSpec,
        z: &Vec<f32>,
        protos: &Vec<f32>,
        labels: &Vec<f32>,
        weights: Option<&Vec<f32>>,
        lse: &Vec<f32>,
        grad_loss: &Vec<f32>,
        dz: &mut Vec<f32>,
    ) -> Result<()> {
        check_buffers(s, z, protos, labels, weights)?;
        check_len(OP, "lse", lse, s.n)?;
        check_len(OP, "grad_loss", grad_loss, 1)?;
        check_len(OP, "dz", dz, s.n * s.d)?;
        let (k, d) = (s.k, s.d);
        if d == 0 {
            return Ok(());
        }
        // dL/da_il = (g/n)·(w̃_il − 1[l=y]); da/dz = μ/τ.
        let scale = grad_loss[0] * s.inv_tau / s.n as f32;
        z[..s.n * d]
            .par_chunks(ROW_TILE * d)
            .zip(dz[..s.n * d].par_chunks_mut(ROW_TILE * d))
            .zip(lse[..s.n].par_chunks(ROW_TILE))
            .zip(labels[..s.n].par_chunks(ROW_TILE))
            .enumerate()
            .try_for_each_init(
                || vec![0.0f32; ROW_TILE * k],
                |logits, (t, (((z_tile, dz_tile), lse_tile), y_tile))| -> Result<()> {
                    tile_logits(s, z_tile, protos, logits);
                    let rows = lse_tile.len();
                    for (r, (&l, &y_raw)) in lse_tile.iter().zip(y_tile).enumerate() {
                        let y = decode_label(y_raw, k, t * ROW_TILE + r)?;
                        let row = &mut logits[r * k..(r + 1) * k];
                        let a_y = row[y];
                        match weight_row(weights, y, k) {
                            Some(w) => row
                                .iter_mut()
                                .zip(w)
                                .for_each(|(a, w)| *a = scale * w * (*a - l).exp()),
                            None => row.iter_mut().for_each(|a| *a = scale * (*a - l).exp()),
                        }
                        // W[y,y] is read as 1, and the target's indicator is subtracted.
                        row[y] = scale * ((a_y - l).exp() - 1.0);
                    }
                    let spec = GemmSpec::new(rows, d, k).beta(1.0);
                    gemm_serial(&spec, &logits[..rows * k], protos, dz_tile);
                    Ok(())
                },
            )
    }
}
