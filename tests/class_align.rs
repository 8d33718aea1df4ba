//! Confusion-weighted class alignment: forward and confusion accumulation
//! against a plain f64 host definition, gradients against finite differences
//! and the closed form of plain cross-entropy, shape/label errors, and the
//! epoch-end weight update of `diccae_engine::confusion`.

// The references are plain index loops on purpose: they spell out the definition.
#![allow(clippy::needless_range_loop)]

use diccae_engine::autograd::{ParamStore, Tape};
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::confusion::{
    ema, row_normalise, symmetric_degree, target_weights, update_weights,
};
use diccae_engine::gradcheck::{GradCheck, all_close, check_gradients, test_seed};
use diccae_engine::ops::class_align::class_align;
use diccae_engine::rng::{SeededRng, normal_vec, seeded, uniform_vec};
use diccae_engine::tensor::Tensor;
use rand::Rng;

const NS: [usize; 4] = [1, 7, 33, 129];
const KS: [usize; 3] = [1, 3, 10];
const DS: [usize; 2] = [5, 33];

/// One random problem: z [n,d], unit prototypes [k,d], labels, positive W.
struct Case {
    n: usize,
    k: usize,
    d: usize,
    z: Vec<f32>,
    protos: Vec<f32>,
    labels: Vec<f32>,
    weights: Vec<f32>,
}

fn case(rng: &mut SeededRng, n: usize, k: usize, d: usize) -> Case {
    let mut protos = normal_vec(rng, k * d, 1.0);
    for row in protos.chunks_exact_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm);
    }
    Case {
        n,
        k,
        d,
        z: normal_vec(rng, n * d, 0.4),
        protos,
        labels: (0..n).map(|_| rng.random_range(0..k) as f32).collect(),
        weights: uniform_vec(rng, k * k, 0.5, 3.0),
    }
}

/// Loss and soft-confusion increment by definition, in f64.
fn reference(c: &Case, weighted: bool, tau: f64) -> (f64, Vec<f64>) {
    let (n, k, d) = (c.n, c.k, c.d);
    let mut loss = 0.0;
    let mut conf = vec![0.0f64; k * k];
    for i in 0..n {
        let y = c.labels[i] as usize;
        let a: Vec<f64> = (0..k)
            .map(|l| {
                (0..d)
                    .map(|j| f64::from(c.z[i * d + j]) * f64::from(c.protos[l * d + j]))
                    .sum::<f64>()
                    / tau
            })
            .collect();
        let mut denom = 0.0;
        for l in 0..k {
            let w = if weighted && l != y {
                f64::from(c.weights[y * k + l])
            } else {
                1.0
            };
            denom += w * a[l].exp();
        }
        loss -= (a[y].exp() / denom).ln();
        let total: f64 = a.iter().map(|v| v.exp()).sum();
        for l in 0..k {
            conf[y * k + l] += a[l].exp() / total;
        }
    }
    (loss / n as f64, conf)
}

/// Runs the op on the CPU; returns the loss and the accumulator afterwards.
fn run(c: &Case, weighted: bool, tau: f32, conf0: &[f32]) -> (f32, Vec<f32>) {
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    let mut tape = Tape::new(&store);
    let z = tape.leaf(Tensor::from_host(&be, &[c.n, c.d], &c.z).unwrap());
    let protos = Tensor::from_host(&be, &[c.k, c.d], &c.protos).unwrap();
    let labels = Tensor::from_host(&be, &[c.n], &c.labels).unwrap();
    let w = Tensor::from_host(&be, &[c.k, c.k], &c.weights).unwrap();
    let mut conf = Tensor::from_host(&be, &[c.k, c.k], conf0).unwrap();
    let w = weighted.then_some(&w);
    let loss = class_align(&mut tape, z, &protos, &labels, w, tau, Some(&mut conf)).unwrap();
    assert_eq!(tape.shape(loss), &[] as &[usize]);
    (tape.value(loss).buf()[0], conf.to_host(&be).unwrap())
}

#[test]
fn forward_and_confusion_match_the_definition() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for &n in &NS {
        for &k in &KS {
            for &d in &DS {
                let c = case(&mut rng, n, k, d);
                for weighted in [false, true] {
                    let tau = 0.1;
                    let conf0 = uniform_vec(&mut rng, k * k, 0.0, 2.0);
                    let (loss, conf) = run(&c, weighted, tau, &conf0);
                    let (want_loss, want_inc) = reference(&c, weighted, f64::from(tau));
                    let want_conf: Vec<f32> = conf0
                        .iter()
                        .zip(&want_inc)
                        .map(|(&c0, &inc)| (f64::from(c0) + inc) as f32)
                        .collect();
                    let what = format!("seed {seed} n{n} k{k} d{d} weighted {weighted}");
                    // f32 logits up to ~|z|·|μ|/τ ≈ 40: a few ulp of that.
                    all_close(&[loss], &[want_loss as f32], 1e-5, 2e-5)
                        .unwrap_or_else(|e| panic!("loss, {what}: {e}"));
                    all_close(&conf, &want_conf, 1e-5, 1e-5)
                        .unwrap_or_else(|e| panic!("confusion, {what}: {e}"));
                }
            }
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let cfg = GradCheck::default();
    // τ = 0.5 keeps the central-difference truncation error (∝ 1/τ³) small.
    let tau = 0.5;
    for &n in &NS {
        for &k in &KS {
            for &d in &DS {
                let c = case(&mut rng, n, k, d);
                for weighted in [false, true] {
                    let inputs = vec![(vec![n, d], c.z.clone())];
                    check_gradients(
                        &format!("class_align n{n} k{k} d{d} weighted {weighted}"),
                        seed,
                        &inputs,
                        &cfg,
                        |t, v| {
                            let be = t.backend().clone();
                            let protos = Tensor::from_host(&be, &[k, d], &c.protos)?;
                            let labels = Tensor::from_host(&be, &[n], &c.labels)?;
                            let w = Tensor::from_host(&be, &[k, k], &c.weights)?;
                            let w = weighted.then_some(&w);
                            class_align(t, v[0], &protos, &labels, w, tau, None)
                        },
                    )
                    .unwrap_or_else(|e| panic!("{e}"));
                }
            }
        }
    }
}

/// Plain cross-entropy over prototype logits, and its gradient
/// `(softmax − onehot)·μ/(nτ)`, in f64.
fn plain_ce(c: &Case, tau: f64) -> (f64, Vec<f32>) {
    let (n, k, d) = (c.n, c.k, c.d);
    let mut loss = 0.0;
    let mut grad = vec![0.0f32; n * d];
    for i in 0..n {
        let y = c.labels[i] as usize;
        let a: Vec<f64> = (0..k)
            .map(|l| {
                (0..d)
                    .map(|j| f64::from(c.z[i * d + j]) * f64::from(c.protos[l * d + j]))
                    .sum::<f64>()
                    / tau
            })
            .collect();
        let m = a.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = m + a.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        loss += lse - a[y];
        for j in 0..d {
            let mut g = 0.0;
            for l in 0..k {
                let p = (a[l] - lse).exp() - if l == y { 1.0 } else { 0.0 };
                g += p * f64::from(c.protos[l * d + j]);
            }
            grad[i * d + j] = (g / (tau * n as f64)) as f32;
        }
    }
    (loss / n as f64, grad)
}

#[test]
fn unweighted_is_plain_cross_entropy_and_ones_change_nothing() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    let tau = 0.1f32;
    for &(n, k, d) in &[(7, 3, 5), (129, 10, 33), (300, 200, 16)] {
        let c = case(&mut rng, n, k, d);
        let (want_loss, want_grad) = plain_ce(&c, f64::from(tau));
        let ones = Tensor::from_host(&be, &[k, k], &vec![1.0; k * k]).unwrap();
        let mut results = Vec::new();
        for w in [None, Some(&ones)] {
            let store = ParamStore::new(be.clone());
            let mut tape = Tape::new(&store);
            let z = tape.leaf(Tensor::from_host(&be, &[n, d], &c.z).unwrap());
            let protos = Tensor::from_host(&be, &[k, d], &c.protos).unwrap();
            let labels = Tensor::from_host(&be, &[n], &c.labels).unwrap();
            let loss = class_align(&mut tape, z, &protos, &labels, w, tau, None).unwrap();
            let grads = tape.backward(loss).unwrap();
            let what = format!("seed {seed} n{n} k{k} d{d} ones {}", w.is_some());
            let loss = tape.value(loss).buf()[0];
            all_close(&[loss], &[want_loss as f32], 1e-5, 1e-5)
                .unwrap_or_else(|e| panic!("loss, {what}: {e}"));
            let g = grads.var(z).unwrap().clone();
            all_close(&g, &want_grad, 1e-4, 1e-6).unwrap_or_else(|e| panic!("grad, {what}: {e}"));
            results.push((loss, g));
        }
        all_close(&[results[0].0], &[results[1].0], 1e-6, 1e-6).unwrap();
        all_close(&results[0].1, &results[1].1, 1e-5, 1e-7).unwrap();
    }
}

#[test]
fn rejects_bad_labels_shapes_weights_and_temperature() {
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    let mut tape = Tape::new(&store);
    let z = tape.leaf(Tensor::zeros(&be, &[4, 3]).unwrap());
    let protos = Tensor::zeros(&be, &[5, 3]).unwrap();
    let good = Tensor::from_host(&be, &[4], &[0.0, 4.0, 2.0, 1.0]).unwrap();
    for (bad, row) in [
        ([0.0, 1.0, 5.0, 1.0], 2),
        ([0.0, 1.0, 2.0, -1.0], 3),
        ([1.5, 1.0, 2.0, 1.0], 0),
        ([0.0, f32::NAN, 2.0, 1.0], 1),
    ] {
        let labels = Tensor::from_host(&be, &[4], &bad).unwrap();
        let err = class_align(&mut tape, z, &protos, &labels, None, 0.1, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("row {row}")) && err.contains("0..5"),
            "{err}"
        );
    }
    let short = Tensor::zeros(&be, &[3]).unwrap();
    let err = class_align(&mut tape, z, &protos, &short, None, 0.1, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[3]") && err.contains("[4, 3]"), "{err}");
    let w = Tensor::zeros(&be, &[5, 4]).unwrap();
    let err = class_align(&mut tape, z, &protos, &good, Some(&w), 0.1, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[5, 4]") && err.contains("[5, 5]"), "{err}");
    let mut w = vec![1.0; 25];
    w[7] = 0.0;
    let w = Tensor::from_host(&be, &[5, 5], &w).unwrap();
    let err = class_align(&mut tape, z, &protos, &good, Some(&w), 0.1, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("W[1, 2]"), "{err}");
    let mut conf = Tensor::zeros(&be, &[4, 4]).unwrap();
    let err = class_align(&mut tape, z, &protos, &good, None, 0.1, Some(&mut conf))
        .unwrap_err()
        .to_string();
    assert!(err.contains("confusion"), "{err}");
    let wrong_d = Tensor::zeros(&be, &[5, 2]).unwrap();
    assert!(class_align(&mut tape, z, &wrong_d, &good, None, 0.1, None).is_err());
    assert!(class_align(&mut tape, z, &protos, &good, None, 0.0, None).is_err());
    assert!(class_align(&mut tape, z, &protos, &good, None, 0.1, None).is_ok());
}

#[test]
fn no_grad_tape_still_accumulates_confusion() {
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    let mut tape = Tape::no_grad(&store);
    let mut rng = seeded(test_seed());
    let c = case(&mut rng, 33, 3, 5);
    let z = tape.constant(Tensor::from_host(&be, &[33, 5], &c.z).unwrap());
    let protos = Tensor::from_host(&be, &[3, 5], &c.protos).unwrap();
    let labels = Tensor::from_host(&be, &[33], &c.labels).unwrap();
    let mut conf = Tensor::zeros(&be, &[3, 3]).unwrap();
    class_align(&mut tape, z, &protos, &labels, None, 0.1, Some(&mut conf)).unwrap();
    assert_eq!(tape.num_nodes(), 0);
    // Every row contributes a probability vector: the total mass is n.
    let total: f32 = conf.to_host(&be).unwrap().iter().sum();
    assert!((total - 33.0).abs() < 1e-3, "{total}");
}

// ---- epoch-end weight update (src/confusion.rs) ----

#[test]
fn row_normalise_and_symmetric_degree() {
    let c = [2.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 3.0, 0.0];
    let p = row_normalise(&c, 3).unwrap();
    all_close(
        &p,
        &[0.5, 0.25, 0.25, 0.0, 0.0, 0.0, 0.25, 0.75, 0.0],
        1e-6,
        0.0,
    )
    .unwrap();
    let d = symmetric_degree(&p, 3).unwrap();
    all_close(
        &d,
        &[0.0, 0.125, 0.25, 0.125, 0.0, 0.375, 0.25, 0.375, 0.0],
        1e-6,
        0.0,
    )
    .unwrap();
    assert!(row_normalise(&c, 2).is_err());
}

#[test]
fn target_weights_and_ema() {
    let d = [0.0, 0.2, 0.4, 0.2, 0.0, 0.1, 0.4, 0.1, 0.0];
    let w_new = target_weights(&d, 3, 1.0).unwrap();
    all_close(
        &w_new,
        &[1.0, 1.5, 2.0, 1.5, 1.0, 1.25, 2.0, 1.25, 1.0],
        1e-6,
        0.0,
    )
    .unwrap();
    // max(D) = 0: all ones.
    assert_eq!(target_weights(&[0.0; 4], 2, 1.0).unwrap(), vec![1.0; 4]);
    let mut w = vec![1.0; 9];
    ema(&mut w, &w_new, 3, 0.9).unwrap();
    let want: Vec<f32> = w_new.iter().map(|v| 0.9 + 0.1 * v).collect();
    all_close(&w, &want, 1e-6, 0.0).unwrap();
}

#[test]
fn update_weights_composes_the_steps() {
    let mut rng = seeded(test_seed());
    let k = 7;
    let c = uniform_vec(&mut rng, k * k, 0.0, 5.0);
    let w0 = uniform_vec(&mut rng, k * k, 1.0, 2.0);
    let mut w = w0.clone();
    update_weights(&mut w, &c, k, 0.6, 0.9).unwrap();
    let d = symmetric_degree(&row_normalise(&c, k).unwrap(), k).unwrap();
    let mut want = w0.clone();
    ema(&mut want, &target_weights(&d, k, 0.6).unwrap(), k, 0.9).unwrap();
    assert_eq!(w, want);
    // β = 0 pulls W towards ones; negative β or γ outside [0, 1] is rejected.
    let mut w = w0.clone();
    update_weights(&mut w, &c, k, 0.0, 0.0).unwrap();
    assert_eq!(w, vec![1.0; k * k]);
    assert!(update_weights(&mut w, &c, k, -1.0, 0.9).is_err());
    assert!(update_weights(&mut w, &c, k, 1.0, 1.5).is_err());
}
