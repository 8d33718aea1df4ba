//! Fused attention and softmax: forwards against f64 host definitions,
//! fused attention against the naive composition of tape ops
//! `softmax(Q·Kᵀ·scale)·V` (outputs and gradients), and finite-difference
//! gradient checks, at sizes that are not multiples of the kernel's
//! 128-row tiles (129 spans two of them, 300 three).

use diccae_engine::autograd::{ParamStore, Tape};
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::gradcheck::{GradCheck, all_close, check_gradients, test_seed};
use diccae_engine::ops::attention::attention;
use diccae_engine::ops::matmul::matmul;
use diccae_engine::ops::softmax::softmax;
use diccae_engine::rng::{normal_vec, seeded, uniform_vec};
use diccae_engine::tensor::Tensor;

const SEQS: [usize; 5] = [1, 7, 33, 129, 300];
const HEAD_DIMS: [usize; 3] = [1, 5, 16];
const HEADS: [usize; 2] = [1, 3];
const BATCHES: [usize; 2] = [1, 2];

/// Every (batch, seq, heads, head_dim) combination of the awkward sizes.
fn all_sizes() -> Vec<(usize, usize, usize, usize)> {
    let mut v = Vec::new();
    for &b in &BATCHES {
        for &s in &SEQS {
            for &h in &HEADS {
                for &dh in &HEAD_DIMS {
                    v.push((b, s, h, dh));
                }
            }
        }
    }
    v
}

/// Softmax of each row by definition, in f64.
fn softmax_f64(x: &[f32], cols: usize) -> Vec<f32> {
    x.chunks(cols)
        .flat_map(|row| {
            let m = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let e: Vec<f64> = row.iter().map(|&v| (f64::from(v) - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(move |e| (e / s) as f32)
        })
        .collect()
}

/// Attention by definition in f64, on the packed `[b, s, 3·h·dh]` layout.
fn attention_f64(qkv: &[f32], b: usize, s: usize, h: usize, dh: usize) -> Vec<f32> {
    let w = h * dh;
    let at = |bi: usize, t: usize, part: usize, hi: usize, d: usize| {
        f64::from(qkv[(bi * s + t) * 3 * w + part * w + hi * dh + d])
    };
    let scale = 1.0 / (dh as f64).sqrt();
    let mut out = vec![0.0f32; b * s * w];
    for bi in 0..b {
        for hi in 0..h {
            for i in 0..s {
                let scores: Vec<f64> = (0..s)
                    .map(|j| {
                        (0..dh)
                            .map(|d| at(bi, i, 0, hi, d) * at(bi, j, 1, hi, d))
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..dh {
                    let o: f64 = (0..s).map(|j| e[j] * at(bi, j, 2, hi, d)).sum::<f64>() / z;
                    out[(bi * s + i) * w + hi * dh + d] = o as f32;
                }
            }
        }
    }
    out
}

/// Part `part` (0 q, 1 k, 2 v) of packed rows `[b, s, 3·h·dh]` (or, with
/// `parts = 1`, of plain `[b, s, h·dh]` rows) rearranged to `[b·h, s, dh]`.
fn to_heads(
    x: &[f32],
    parts: usize,
    part: usize,
    b: usize,
    s: usize,
    h: usize,
    dh: usize,
) -> Vec<f32> {
    let w = h * dh;
    let mut y = Vec::with_capacity(b * h * s * dh);
    for bi in 0..b {
        for hi in 0..h {
            for t in 0..s {
                let at = (bi * s + t) * parts * w + part * w + hi * dh;
                y.extend_from_slice(&x[at..at + dh]);
            }
        }
    }
    y
}

#[test]
fn attention_forward_matches_f64_definition() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    for (b, s, h, dh) in all_sizes() {
        let qkv = normal_vec(&mut rng, b * s * 3 * h * dh, 1.0);
        let mut tape = Tape::no_grad(&store);
        let x = tape.constant(Tensor::from_host(&be, &[b, s, 3 * h * dh], &qkv).unwrap());
        let y = attention(&mut tape, x, h).unwrap();
        assert_eq!(tape.shape(y), &[b, s, h * dh]);
        let got = tape.value(y).to_host(&be).unwrap();
        all_close(&got, &attention_f64(&qkv, b, s, h, dh), 1e-4, 1e-5)
            .unwrap_or_else(|e| panic!("seed {seed} b{b} s{s} h{h} dh{dh}: {e}"));
    }
}

#[test]
fn attention_matches_naive_tape_composition() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    for (b, s, h, dh) in all_sizes() {
        let what = format!("seed {seed} b{b} s{s} h{h} dh{dh}");
        let w = h * dh;
        let scale = 1.0 / (dh as f32).sqrt();
        let qkv = normal_vec(&mut rng, b * s * 3 * w, 1.0);
        let r = uniform_vec(&mut rng, b * s * w, -1.0, 1.0);

        // Fused.
        let mut tape = Tape::new(&store);
        let x = tape.leaf(Tensor::from_host(&be, &[b, s, 3 * w], &qkv).unwrap());
        let y = attention(&mut tape, x, h).unwrap();
        let fused_out = tape.value(y).to_host(&be).unwrap();
        let grads = tape.backward_with_seed(y, r.clone()).unwrap();
        let dqkv = grads.var(x).unwrap();

        // Naive: per-head [b·h, s, dh] leaves, the scale folded into q.
        let mut tape = Tape::new(&store);
        let q: Vec<f32> = to_heads(&qkv, 3, 0, b, s, h, dh)
            .iter()
            .map(|v| v * scale)
            .collect();
        let shape = [b * h, s, dh];
        let q = tape.leaf(Tensor::from_host(&be, &shape, &q).unwrap());
        let k =
            tape.leaf(Tensor::from_host(&be, &shape, &to_heads(&qkv, 3, 1, b, s, h, dh)).unwrap());
        let v =
            tape.leaf(Tensor::from_host(&be, &shape, &to_heads(&qkv, 3, 2, b, s, h, dh)).unwrap());
        let scores = matmul(&mut tape, q, k, false, true).unwrap();
        let p = softmax(&mut tape, scores).unwrap();
        let o = matmul(&mut tape, p, v, false, false).unwrap();
        let naive_out = tape.value(o).to_host(&be).unwrap();
        let ng = tape
            .backward_with_seed(o, to_heads(&r, 1, 0, b, s, h, dh))
            .unwrap();

        all_close(
            &to_heads(&fused_out, 1, 0, b, s, h, dh),
            &naive_out,
            1e-4,
            1e-5,
        )
        .unwrap_or_else(|e| panic!("{what} output: {e}"));
        // d(q·scale)/dq = scale.
        let dq_naive: Vec<f32> = ng.var(q).unwrap().iter().map(|g| g * scale).collect();
        for (part, want) in [
            (0, &dq_naive),
            (1, ng.var(k).unwrap()),
            (2, ng.var(v).unwrap()),
        ] {
            all_close(&to_heads(dqkv, 3, part, b, s, h, dh), want, 1e-3, 1e-5)
                .unwrap_or_else(|e| panic!("{what} gradient of part {part}: {e}"));
        }
    }
}

#[test]
fn attention_gradients_match_finite_differences() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let cfg = GradCheck::default();
    for (b, s, h, dh) in [
        (1, 1, 1, 1),
        (2, 7, 3, 5),
        (1, 33, 1, 16),
        (2, 33, 3, 1),
        (1, 129, 3, 5),
        (2, 129, 1, 16),
        (1, 300, 2, 5),
    ] {
        let inputs = vec![(
            vec![b, s, 3 * h * dh],
            normal_vec(&mut rng, b * s * 3 * h * dh, 1.0),
        )];
        check_gradients(
            &format!("attention b{b} s{s} h{h} dh{dh}"),
            seed,
            &inputs,
            &cfg,
            |t, v| attention(t, v[0], h),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn attention_accumulates_into_an_existing_gradient() {
    // qkv feeds two attentions: its gradient is the sum of both.
    let seed = test_seed();
    let mut rng = seeded(seed);
    let inputs = vec![(vec![2, 7, 12], normal_vec(&mut rng, 2 * 7 * 12, 1.0))];
    check_gradients(
        "attention twice",
        seed,
        &inputs,
        &GradCheck::default(),
        |t, v| {
            let a = attention(t, v[0], 2)?;
            let b = attention(t, v[0], 4)?;
            matmul(t, a, b, false, true)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn attention_rejects_bad_shapes() {
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    let mut tape = Tape::new(&store);
    let x = tape.constant(Tensor::zeros(&be, &[2, 5, 20]).unwrap());
    let err = attention(&mut tape, x, 3).unwrap_err().to_string();
    assert!(err.contains("[2, 5, 20]") && err.contains("9"), "{err}");
    assert!(attention(&mut tape, x, 0).is_err());
    let flat = tape.constant(Tensor::zeros(&be, &[10, 18]).unwrap());
    let err = attention(&mut tape, flat, 3).unwrap_err().to_string();
    assert!(err.contains("[10, 18]"), "{err}");
}

#[test]
fn softmax_forward_matches_f64_definition_and_is_stable() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    for (rows, cols) in [(1, 1), (7, 33), (33, 7), (5, 129), (300, 129)] {
        let x = normal_vec(&mut rng, rows * cols, 3.0);
        let want = softmax_f64(&x, cols);
        // Shifting every row by a large constant changes nothing.
        for shift in [0.0f32, 1000.0, -1000.0] {
            let xs: Vec<f32> = x.iter().map(|v| v + shift).collect();
            let mut tape = Tape::no_grad(&store);
            let xv = tape.constant(Tensor::from_host(&be, &[rows, cols], &xs).unwrap());
            let y = softmax(&mut tape, xv).unwrap();
            let got = tape.value(y).to_host(&be).unwrap();
            // The shift costs up to |shift|·2⁻²⁴ absolute in the inputs.
            all_close(&got, &want, 1e-3, 1e-6)
                .unwrap_or_else(|e| panic!("seed {seed} {rows}x{cols} shift {shift}: {e}"));
        }
    }
}

#[test]
fn softmax_gradients_match_finite_differences() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let cfg = GradCheck::default();
    for shape in [vec![1], vec![7, 33], vec![2, 3, 129], vec![33, 1]] {
        let n = shape.iter().product();
        let inputs = vec![(shape.clone(), normal_vec(&mut rng, n, 1.0))];
        check_gradients(
            &format!("softmax {shape:?}"),
            seed,
            &inputs,
            &cfg,
            |t, v| softmax(t, v[0]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn softmax_rejects_a_scalar() {
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    let mut tape = Tape::new(&store);
    let x = tape.constant(Tensor::zeros(&be, &[]).unwrap());
    assert!(softmax(&mut tape, x).is_err());
}
