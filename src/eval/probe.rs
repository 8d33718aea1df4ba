//! Linear probe: multinomial logistic regression on frozen features,
//! trained full-batch with the engine's own ops and AdamW.

use crate::autograd::{ParamStore, Tape};
use crate::backend::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::eval::metrics::top_k_accuracy;
use crate::ops::cross_entropy::cross_entropy;
use crate::ops::elementwise::bias_add;
use crate::ops::matmul::matmul;
use crate::optim::{AdamW, AdamWConfig, WarmupCosine};
use crate::tensor::Tensor;

/// Settings of a linear probe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeConfig {
    /// Full-batch optimisation steps.
    pub steps: usize,
    /// Peak learning rate.
    pub lr: f32,
    /// Weight decay of the weight matrix.
    pub weight_decay: f32,
}

/// What a probe measured on the test split.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    /// Top-1 accuracy.
    pub top1: f64,
    /// Top-5 accuracy (top-C when there are fewer than 5 classes).
    pub top5: f64,
    /// Predicted class of every test row.
    pub predictions: Vec<usize>,
}

/// Per-column mean and standard deviation of `x [n, d]`.
fn column_stats(x: &[f32], d: usize) -> (Vec<f32>, Vec<f32>) {
    let n = (x.len() / d).max(1) as f64;
    let mut mean = vec![0.0f64; d];
    for row in x.chunks_exact(d) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0f64; d];
    for row in x.chunks_exact(d) {
        for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
            *s += (f64::from(v) - m).powi(2);
        }
    }
    let std = var
        .iter()
        .map(|s| ((s / n).sqrt().max(1e-6)) as f32)
        .collect();
    (mean.iter().map(|&m| m as f32).collect(), std)
}

fn standardise(x: &[f32], mean: &[f32], std: &[f32]) -> Vec<f32> {
    let d = mean.len();
    let mut out = x.to_vec();
    for row in out.chunks_exact_mut(d) {
        for ((v, m), s) in row.iter_mut().zip(mean).zip(std) {
            *v = (*v - m) / s;
        }
    }
    out
}

/// Trains a linear classifier on `train_x [n, d]` with labels `train_y` and
/// scores it on `test_x`. Features are standardised with the training
/// statistics.
pub fn linear_probe(
    train_x: &[f32],
    train_y: &[usize],
    test_x: &[f32],
    test_y: &[usize],
    d: usize,
    classes: usize,
    cfg: &ProbeConfig,
) -> Result<ProbeResult> {
    let n = train_y.len();
    if d == 0
        || train_x.len() != n * d
        || test_x.len() != test_y.len() * d
        || n == 0
        || test_y.is_empty()
    {
        return Err(Error::shape(
            "linear_probe",
            format!(
                "{} training values for {n} rows × {d}, {} test values for {} rows",
                train_x.len(),
                test_x.len(),
                test_y.len()
            ),
        ));
    }
    let (mean, std) = column_stats(train_x, d);
    let xs = standardise(train_x, &mean, &std);
    let xt = standardise(test_x, &mean, &std);
    let be = CpuBackend::new();
    let mut store = ParamStore::new(be.clone());
    let w = store.add("probe.weight", Tensor::zeros(&be, &[d, classes])?, true)?;
    let b = store.add("probe.bias", Tensor::zeros(&be, &[classes])?, false)?;
    let mut opt = AdamW::new(AdamWConfig {
        weight_decay: cfg.weight_decay,
        beta2: 0.999,
        ..AdamWConfig::default()
    });
    let sched = WarmupCosine {
        peak: cfg.lr,
        floor: cfg.lr * 0.01,
        warmup: (cfg.steps / 20) as u64,
        total: cfg.steps as u64,
    };
    let x_train = Tensor::from_host(&be, &[n, d], &xs)?;
    for step in 0..cfg.steps {
        let grads = {
            let mut tape = Tape::new(&store);
            let x = tape.constant(x_train.duplicate(&be)?);
            let (wv, bv) = (tape.param(w), tape.param(b));
            let logits = matmul(&mut tape, x, wv, false, false)?;
            let logits = bias_add(&mut tape, logits, bv)?;
            let loss = cross_entropy(&mut tape, logits, train_y, 1.0)?;
            tape.backward(loss)?
        };
        opt.step(&mut store, &grads, sched.lr(step as u64))?;
    }
    let tape_store = &store;
    let mut tape = Tape::no_grad(tape_store);
    let x = tape.constant(Tensor::from_host(&be, &[test_y.len(), d], &xt)?);
    let (wv, bv) = (tape.param(w), tape.param(b));
    let logits = matmul(&mut tape, x, wv, false, false)?;
    let logits = bias_add(&mut tape, logits, bv)?;
    let scores = tape.value(logits).to_host(&be)?;
    let predictions = scores
        .chunks_exact(classes)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 { (i, v) } else { best }
                })
                .0
        })
        .collect();
    Ok(ProbeResult {
        top1: top_k_accuracy(&scores, classes, test_y, 1),
        top5: top_k_accuracy(&scores, classes, test_y, 5.min(classes)),
        predictions,
    })
}
