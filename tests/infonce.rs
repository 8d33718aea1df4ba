//! Fused InfoNCE and softmax cross-entropy: forward and gradients against f64
//! host references, InfoNCE against the explicit B×B composition of plain
//! tape ops, and finite-difference gradient checks, at awkward sizes that
//! span several of the CPU kernel's 128×256 tiles.

use diccae_engine::autograd::{ParamStore, Tape};
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::gradcheck::{GradCheck, all_close, check_gradients, test_seed};
use diccae_engine::ops::cross_entropy::cross_entropy;
use diccae_engine::ops::infonce::infonce;
use diccae_engine::ops::infonce::kernels::{InfoNceGrads, InfoNceKernels, InfoNceSpec};
use diccae_engine::ops::matmul::matmul;
use diccae_engine::reference::{self, lse};
use diccae_engine::rng::{SeededRng, normal_vec, seeded};
use diccae_engine::tensor::Tensor;
use rand::Rng;

/// `n` rows of dimension `d`, each scaled to unit length (as the model feeds them).
fn unit_rows(rng: &mut SeededRng, n: usize, d: usize) -> Vec<f32> {
    let mut v = normal_vec(rng, n * d, 1.0);
    for row in v.chunks_exact_mut(d) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Cross-entropy by definition in f64: the loss and the logits' gradient.
fn cross_entropy_ref(x: &[f32], t: &[usize], c: usize, scale: f64) -> (f64, Vec<f32>) {
    let n = t.len();
    let mut loss = 0.0;
    let mut grad = vec![0.0f32; n * c];
    for (i, &ti) in t.iter().enumerate() {
        let z: Vec<f64> = x[i * c..(i + 1) * c]
            .iter()
            .map(|&v| scale * f64::from(v))
            .collect();
        let l = lse(&z);
        loss += l - z[ti];
        for k in 0..c {
            let p = (z[k] - l).exp() - if k == ti { 1.0 } else { 0.0 };
            grad[i * c + k] = (scale * p / n as f64) as f32;
        }
    }
    (loss / n as f64, grad)
}

/// `all_close` with an absolute tolerance relative to the reference's largest entry.
fn close_scaled(got: &[f32], want: &[f32], rtol: f32) -> Result<(), String> {
    let peak = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    all_close(got, want, rtol, rtol * peak.max(1e-30))
}

/// Loss and gradients of the fused op through the tape.
fn fused(za: &[f32], zv: &[f32], b: usize, d: usize, tau: f32) -> (f32, Vec<f32>, Vec<f32>) {
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    let mut tape = Tape::new(&store);
    let a = tape.leaf(Tensor::from_host(&be, &[b, d], za).unwrap());
    let v = tape.leaf(Tensor::from_host(&be, &[b, d], zv).unwrap());
    let loss = infonce(&mut tape, a, v, tau).unwrap();
    assert_eq!(tape.shape(loss), &[] as &[usize]);
    let grads = tape.backward(loss).unwrap();
    (
        tape.value(loss).buf()[0],
        grads.var(a).unwrap().clone(),
        grads.var(v).unwrap().clone(),
    )
}

/// (B, d, τ, unit rows): sizes 1, 7, 33 and several-tile sizes, with raw
/// Gaussian inputs and with unit rows at the method's τ = 0.07. The raw
/// B = 257, τ = 0.05 case has logits of std ≈ 56, beyond the CPU kernel's
/// shared-shift span, so it takes the two-`exp` path.
const CASES: [(usize, usize, f32, bool); 8] = [
    (1, 5, 0.5, false),
    (7, 1, 0.3, false),
    (7, 33, 0.07, true),
    (33, 5, 1.0, false),
    (129, 33, 0.07, true),
    (300, 5, 0.5, false),
    (600, 33, 0.07, true),
    (257, 33, 0.05, false),
];

fn case_inputs(rng: &mut SeededRng, b: usize, d: usize, unit: bool) -> (Vec<f32>, Vec<f32>) {
    if unit {
        (unit_rows(rng, b, d), unit_rows(rng, b, d))
    } else {
        (normal_vec(rng, b * d, 0.7), normal_vec(rng, b * d, 0.7))
    }
}

#[test]
fn infonce_matches_f64_reference() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for &(b, d, tau, unit) in &CASES {
        let (za, zv) = case_inputs(&mut rng, b, d, unit);
        let (loss, dza, dzv) = fused(&za, &zv, b, d, tau);
        let (want, wa, wv) = reference::infonce(&za, &zv, b, d, f64::from(tau));
        let ctx = format!("seed {seed} B{b} d{d} tau{tau}");
        // Loss: f32 tile sums of at most 256 exps, merged; 1e-5 relative.
        assert!(
            (f64::from(loss) - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{ctx}: loss {loss} vs {want}"
        );
        // Gradients: f32 GEMM accumulation over B terms; 1e-3 of the peak.
        close_scaled(&dza, &wa, 1e-3).unwrap_or_else(|e| panic!("{ctx} dza: {e}"));
        close_scaled(&dzv, &wv, 1e-3).unwrap_or_else(|e| panic!("{ctx} dzv: {e}"));
    }
}

#[test]
fn infonce_matches_explicit_logit_composition() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for &(b, d, tau, unit) in &CASES {
        let (za, zv) = case_inputs(&mut rng, b, d, unit);
        let (loss, dza, dzv) = fused(&za, &zv, b, d, tau);
        // ½·[CE(za·zvᵀ, arange, 1/τ) + CE(zv·zaᵀ, arange, 1/τ)] with B×B logits.
        let be = CpuBackend::new();
        let store = ParamStore::new(be.clone());
        let mut tape = Tape::new(&store);
        let a = tape.leaf(Tensor::from_host(&be, &[b, d], &za).unwrap());
        let v = tape.leaf(Tensor::from_host(&be, &[b, d], &zv).unwrap());
        let arange: Vec<usize> = (0..b).collect();
        let s_av = matmul(&mut tape, a, v, false, true).unwrap();
        let l_av = cross_entropy(&mut tape, s_av, &arange, 1.0 / tau).unwrap();
        let s_va = matmul(&mut tape, v, a, false, true).unwrap();
        let l_va = cross_entropy(&mut tape, s_va, &arange, 1.0 / tau).unwrap();
        let naive = 0.5 * (tape.value(l_av).buf()[0] + tape.value(l_va).buf()[0]);
        let g1 = tape.backward(l_av).unwrap();
        let g2 = tape.backward(l_va).unwrap();
        let half_sum = |x: &Vec<f32>, y: &Vec<f32>| -> Vec<f32> {
            x.iter().zip(y).map(|(p, q)| 0.5 * (p + q)).collect()
        };
        let na = half_sum(g1.var(a).unwrap(), g2.var(a).unwrap());
        let nv = half_sum(g1.var(v).unwrap(), g2.var(v).unwrap());
        let ctx = format!("seed {seed} B{b} d{d} tau{tau}");
        assert!(
            (loss - naive).abs() <= 1e-5 * naive.abs().max(1.0),
            "{ctx}: fused {loss} vs explicit {naive}"
        );
        close_scaled(&dza, &na, 1e-3).unwrap_or_else(|e| panic!("{ctx} dza: {e}"));
        close_scaled(&dzv, &nv, 1e-3).unwrap_or_else(|e| panic!("{ctx} dzv: {e}"));
    }
}

/// Gradient coordinates are O(1/(Bτ)), down to ~1e-3 here, so the default
/// absolute tolerance (2e-3) would pass anything: use 5e-5, above the f32
/// rounding of the loss divided by 2·eps (~2e-5), and 3e-2 relative.
const SMALL_GRADS: GradCheck = GradCheck {
    eps: 1e-2,
    rtol: 3e-2,
    atol: 5e-5,
    max_coords: 24,
};

#[test]
fn infonce_gradients_match_finite_differences() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for (b, d) in [(1, 5), (7, 1), (7, 33), (33, 5), (300, 5), (129, 33)] {
        let tau = 0.5;
        let inputs = vec![
            (vec![b, d], normal_vec(&mut rng, b * d, 0.7)),
            (vec![b, d], normal_vec(&mut rng, b * d, 0.7)),
        ];
        check_gradients(
            &format!("infonce B{b} d{d}"),
            seed,
            &inputs,
            &SMALL_GRADS,
            |t, v| infonce(t, v[0], v[1], tau),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    // The same embedding on both sides (self-contrast): the two gradients add.
    let inputs = vec![(vec![33, 5], normal_vec(&mut rng, 165, 0.7))];
    check_gradients("infonce self", seed, &inputs, &SMALL_GRADS, |t, v| {
        infonce(t, v[0], v[0], 0.5)
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn infonce_backward_adds_into_existing_gradients() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    let (b, d) = (300, 33);
    let spec = InfoNceSpec {
        batch: b,
        dim: d,
        tau: 0.2,
    };
    let (za, zv) = (unit_rows(&mut rng, b, d), unit_rows(&mut rng, b, d));
    let (_, lse) = be.infonce_fwd(&spec, &za, &zv).unwrap();
    let g = vec![2.5f32];
    let (mut fa, mut fv) = (vec![0.0; b * d], vec![0.0; b * d]);
    let grads = InfoNceGrads {
        dza: Some(&mut fa),
        dzv: Some(&mut fv),
    };
    be.infonce_bwd(&spec, &za, &zv, &lse, &g, grads).unwrap();
    let base = normal_vec(&mut rng, b * d, 1.0);
    let mut acc = base.clone();
    let grads = InfoNceGrads {
        dza: Some(&mut acc),
        dzv: None,
    };
    be.infonce_bwd(&spec, &za, &zv, &lse, &g, grads).unwrap();
    let want: Vec<f32> = base.iter().zip(&fa).map(|(x, y)| x + y).collect();
    all_close(&acc, &want, 1e-6, 1e-6).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let (_, wa, wv) = reference::infonce(&za, &zv, b, d, 0.2);
    let scaled = |w: Vec<f32>| -> Vec<f32> { w.iter().map(|x| 2.5 * x).collect() };
    close_scaled(&fa, &scaled(wa), 1e-3).unwrap_or_else(|e| panic!("seed {seed} dza: {e}"));
    close_scaled(&fv, &scaled(wv), 1e-3).unwrap_or_else(|e| panic!("seed {seed} dzv: {e}"));
}

#[test]
fn cross_entropy_matches_f64_reference() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for (n, c, scale) in [
        (1, 1, 1.0),
        (7, 5, 10.0),
        (33, 33, -0.5),
        (129, 7, 14.3),
        (600, 129, 1.0),
    ] {
        let x = normal_vec(&mut rng, n * c, 2.0);
        let t: Vec<usize> = (0..n).map(|_| rng.random_range(0..c)).collect();
        let be = CpuBackend::new();
        let store = ParamStore::new(be.clone());
        let mut tape = Tape::new(&store);
        let lv = tape.leaf(Tensor::from_host(&be, &[n, c], &x).unwrap());
        let loss = cross_entropy(&mut tape, lv, &t, scale).unwrap();
        let got = tape.value(loss).buf()[0];
        let grads = tape.backward(loss).unwrap();
        let (want, wg) = cross_entropy_ref(&x, &t, c, f64::from(scale));
        let ctx = format!("seed {seed} N{n} C{c} scale{scale}");
        assert!(
            (f64::from(got) - want).abs() <= 1e-5 * want.abs().max(1.0),
            "{ctx}: loss {got} vs {want}"
        );
        close_scaled(grads.var(lv).unwrap(), &wg, 1e-4).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    }
}

#[test]
fn cross_entropy_gradients_match_finite_differences() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for (n, c, scale) in [
        (1, 1, 2.0),
        (1, 5, 2.0),
        (7, 33, 3.0),
        (33, 7, -1.5),
        (300, 5, 1.0),
    ] {
        let inputs = vec![(vec![n, c], normal_vec(&mut rng, n * c, 1.0))];
        let t: Vec<usize> = (0..n).map(|_| rng.random_range(0..c)).collect();
        check_gradients(
            &format!("cross_entropy N{n} C{c}"),
            seed,
            &inputs,
            &SMALL_GRADS,
            |tp, v| cross_entropy(tp, v[0], &t, scale),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn bad_arguments_are_rejected_with_context() {
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    let mut tape = Tape::new(&store);
    let x = tape.constant(Tensor::zeros(&be, &[4, 3]).unwrap());
    let err = cross_entropy(&mut tape, x, &[0, 2, 3, 1], 1.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("row 2") && err.contains("target 3"), "{err}");
    let err = cross_entropy(&mut tape, x, &[0, 1], 1.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[4, 3]") && err.contains("2 targets"), "{err}");
    let y = tape.constant(Tensor::zeros(&be, &[4, 5]).unwrap());
    let err = infonce(&mut tape, x, y, 0.1).unwrap_err().to_string();
    assert!(err.contains("[4, 3]") && err.contains("[4, 5]"), "{err}");
    let err = infonce(&mut tape, x, x, 0.0).unwrap_err().to_string();
    assert!(err.contains("temperature"), "{err}");
}
