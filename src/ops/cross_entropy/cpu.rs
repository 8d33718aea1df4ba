//! Softmax cross-entropy on the CPU: one pass per row for the forward
//! (max-subtracted log-sum-exp), one fused pass per row for the backward.

use rayon::prelude::*;

use crate::backend::cpu::{CpuBackend, PARALLEL_MIN_ELEMS, check_len};
use crate::error::{Error, Result};
use crate::ops::cross_entropy::kernels::{CrossEntropyKernels, CrossEntropySpec};
use crate::ops::infonce::cpu::exp_fast;

/// Rows handled by one rayon task at least, so tasks are not tiny.
fn rows_per_task(classes: usize) -> usize {
    (PARALLEL_MIN_ELEMS / 4 / classes.max(1)).max(1)
}

/// The class index stored as f32 in `t`, or an error naming the row.
fn class_of(t: f32, row: usize, classes: usize) -> Result<usize> {
    if t >= 0.0 && t.fract() == 0.0 && (t as usize) < classes {
        Ok(t as usize)
    } else {
        Err(Error::invalid(
            "cross_entropy",
            format!("target {t} of row {row} is not a class index below {classes}"),
        ))
    }
}

/// `(lse, loss)` of one row: `lse = log Σ exp(scale·x)`, `loss = lse − scale·x[target]`.
fn row_forward(x: &[f32], scale: f32, target: usize) -> (f32, f32) {
    let m = x.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(scale * v));
    let sum: f32 = x.iter().map(|&v| exp_fast(scale * v - m)).sum();
    let lse = m + sum.ln();
    (lse, lse - scale * x[target])
}

/// Checks lengths and returns the exact slices of logits and targets.
fn inputs<'a>(
    op: &'static str,
    spec: &CrossEntropySpec,
    logits: &'a [f32],
    targets: &'a [f32],
) -> Result<(&'a [f32], &'a [f32])> {
    if spec.rows == 0 || spec.classes == 0 {
        return Err(Error::invalid(
            op,
            format!("{} rows of {} classes", spec.rows, spec.classes),
        ));
    }
    let n = spec.rows * spec.classes;
    check_len(op, "logits", logits, n)?;
    check_len(op, "targets", targets, spec.rows)?;
    Ok((&logits[..n], &targets[..spec.rows]))
}

impl CrossEntropyKernels for CpuBackend {
    fn cross_entropy_fwd(
        &self,
        spec: &CrossEntropySpec,
        logits: &Vec<f32>,
        targets: &Vec<f32>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (logits, targets) = inputs("cross_entropy", spec, logits, targets)?;
        let c = spec.classes;
        let per_task = rows_per_task(c);
        let mut lse = vec![0.0f32; spec.rows];
        let total: f64 = lse
            .par_chunks_mut(per_task)
            .zip(logits.par_chunks(per_task * c))
            .zip(targets.par_chunks(per_task))
            .enumerate()
            .map(|(k, ((lse, x), t))| {
                let mut sum = 0.0f64;
                for (i, ((l, row), &t)) in lse.iter_mut().zip(x.chunks_exact(c)).zip(t).enumerate()
                {
                    let (row_lse, loss) =
                        row_forward(row, spec.scale, class_of(t, k * per_task + i, c)?);
                    *l = row_lse;
                    sum += f64::from(loss);
                }
                Ok(sum)
            })
            .collect::<Result<Vec<f64>>>()?
            .iter()
            .sum();
        Ok((vec![(total / spec.rows as f64) as f32], lse))
    }

    fn cross_entropy_bwd(
        &self,
        spec: &CrossEntropySpec,
        logits: &Vec<f32>,
        targets: &Vec<f32>,
        lse: &Vec<f32>,
        grad_loss: &Vec<f32>,
        dlogits: &mut Vec<f32>,
    ) -> Result<()> {
        const OP: &str = "cross_entropy backward";
        let (logits, targets) = inputs(OP, spec, logits, targets)?;
        let (n, c) = (spec.rows, spec.classes);
        check_len(OP, "LSE", lse, n)?;
        check_len(OP, "loss gradient", grad_loss, 1)?;
        check_len(OP, "dlogits", dlogits, n * c)?;
        let scale = spec.scale;
        let coef = grad_loss[0] * scale / n as f32;
        let per_task = rows_per_task(c);
        dlogits[..n * c]
            .par_chunks_mut(per_task * c)
            .zip(logits.par_chunks(per_task * c))
            .zip(targets.par_chunks(per_task))
            .zip(lse[..n].par_chunks(per_task))
            .enumerate()
            .try_for_each(|(k, (((dx, x), t), lse))| {
                let rows = dx
                    .chunks_exact_mut(c)
                    .zip(x.chunks_exact(c))
                    .zip(t)
                    .zip(lse);
                for (i, (((dx, x), &t), &l)) in rows.enumerate() {
                    let target = class_of(t, k * per_task + i, c)?;
                    dx.iter_mut()
                        .zip(x)
                        .for_each(|(g, &v)| *g += coef * exp_fast(scale * v - l));
                    dx[target] -= coef;
                }
                Ok(())
            })
    }
}
