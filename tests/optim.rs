//! AdamW, clipping and the schedule against hand-computed references, and a
//! small regression trained end to end through the tape.

use diccae_engine::autograd::{ParamId, ParamStore, Tape};
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::gradcheck::test_seed;
use diccae_engine::ops::matmul::matmul;
use diccae_engine::optim::{AdamW, AdamWConfig, WarmupCosine, clip_grad_norm, ramp};
use diccae_engine::rng::{normal_vec, seeded};
use diccae_engine::tensor::Tensor;

/// AdamW on one scalar, written out in f64.
fn adamw_reference(p0: f64, grads: &[f64], lr: f64, c: &AdamWConfig, decay: bool) -> f64 {
    let (b1, b2, eps) = (f64::from(c.beta1), f64::from(c.beta2), f64::from(c.eps));
    let wd = if decay {
        f64::from(c.weight_decay)
    } else {
        0.0
    };
    let (mut p, mut m, mut v) = (p0, 0.0, 0.0);
    for (t, &g) in grads.iter().enumerate() {
        let t = (t + 1) as i32;
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        let mhat = m / (1.0 - b1.powi(t));
        let vhat = v / (1.0 - b2.powi(t));
        p -= lr * (mhat / (vhat.sqrt() + eps) + wd * p);
    }
    p
}

/// Runs AdamW on parameter `id` alone with the gradient sequence, from fresh state.
fn run_adamw(store: &mut ParamStore<CpuBackend>, id: ParamId, seq: &[[f32; 3]], cfg: AdamWConfig) {
    let mut opt = AdamW::new(cfg);
    for g in seq {
        let mut tape = Tape::new(store);
        let v = tape.param(id);
        let grads = tape.backward_with_seed(v, g.to_vec()).unwrap();
        drop(tape);
        opt.step(store, &grads, 1e-2).unwrap();
    }
    assert_eq!(opt.step_count(), seq.len() as u64);
}

#[test]
fn adamw_matches_reference_with_and_without_decay() {
    let be = CpuBackend::new();
    let init = [0.5f32, -1.0, 2.0];
    let mut store = ParamStore::new(be.clone());
    let w = store
        .add("w", Tensor::from_host(&be, &[3], &init).unwrap(), true)
        .unwrap();
    let b = store
        .add("b", Tensor::from_host(&be, &[3], &init).unwrap(), false)
        .unwrap();
    let cfg = AdamWConfig {
        weight_decay: 0.1,
        ..AdamWConfig::default()
    };
    let seq = [[0.3f32, -0.2, 1.5], [0.1, 0.4, -2.0], [-0.7, 0.0, 0.25]];

    run_adamw(&mut store, w, &seq, cfg);
    // b had no gradient in any of w's steps: untouched.
    assert_eq!(store.get(b).to_host(&be).unwrap(), init.to_vec());
    run_adamw(&mut store, b, &seq, cfg);

    for (id, decay) in [(w, true), (b, false)] {
        let got = store.get(id).to_host(&be).unwrap();
        for i in 0..3 {
            let gs: Vec<f64> = seq.iter().map(|g| f64::from(g[i])).collect();
            let want = adamw_reference(f64::from(init[i]), &gs, 1e-2, &cfg, decay);
            assert!(
                (f64::from(got[i]) - want).abs() < 1e-6,
                "{}[{i}]: {} vs {want}",
                store.name(id),
                got[i]
            );
        }
    }
}

#[test]
fn adamw_rejects_a_bad_learning_rate() {
    let be = CpuBackend::new();
    let mut store = ParamStore::new(be.clone());
    let w = store
        .add("w", Tensor::zeros(&be, &[2]).unwrap(), true)
        .unwrap();
    let mut tape = Tape::new(&store);
    let v = tape.param(w);
    let g = tape.backward_with_seed(v, vec![1.0, 1.0]).unwrap();
    drop(tape);
    let mut opt = AdamW::new(AdamWConfig::default());
    assert!(opt.step(&mut store, &g, f32::NAN).is_err());
}

#[test]
fn clipping_scales_to_max_norm_and_reports_the_original() {
    let be = CpuBackend::new();
    let mut store = ParamStore::new(be.clone());
    let a = store
        .add("a", Tensor::zeros(&be, &[2]).unwrap(), true)
        .unwrap();
    let mut tape = Tape::new(&store);
    let av = tape.param(a);
    let mut g = tape.backward_with_seed(av, vec![3.0, 4.0]).unwrap();
    let norm = clip_grad_norm(&store, &mut g, 1.0).unwrap();
    assert!((norm - 5.0).abs() < 1e-12);
    let clipped = g.param(a).unwrap();
    assert!((clipped[0] - 0.6).abs() < 1e-6 && (clipped[1] - 0.8).abs() < 1e-6);
    // Below the limit nothing changes.
    let norm = clip_grad_norm(&store, &mut g, 10.0).unwrap();
    assert!((norm - 1.0).abs() < 1e-6);
    assert!((g.param(a).unwrap()[1] - 0.8).abs() < 1e-6);
    // A NaN gradient reports a NaN norm and is left for the caller to reject.
    let mut bad = tape.backward_with_seed(av, vec![f32::NAN, 1.0]).unwrap();
    assert!(clip_grad_norm(&store, &mut bad, 1.0).unwrap().is_nan());
}

#[test]
fn warmup_cosine_schedule() {
    let s = WarmupCosine {
        peak: 1.0,
        floor: 0.1,
        warmup: 10,
        total: 110,
    };
    assert!((s.lr(0) - 0.1).abs() < 1e-6);
    assert!((s.lr(9) - 1.0).abs() < 1e-6);
    assert!((s.lr(10) - 1.0).abs() < 1e-6);
    assert!((s.lr(60) - 0.55).abs() < 1e-5, "midpoint {}", s.lr(60));
    assert!((s.lr(110) - 0.1).abs() < 1e-6);
    assert!((s.lr(10_000) - 0.1).abs() < 1e-6);
    for t in 10..110 {
        assert!(s.lr(t + 1) <= s.lr(t) + 1e-7, "not decreasing at {t}");
    }
}

#[test]
fn tape_and_adamw_fit_a_linear_map() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    let (n, din, dout) = (64, 7, 3);
    let x = normal_vec(&mut rng, n * din, 1.0);
    let w_true = normal_vec(&mut rng, din * dout, 1.0);
    let mut y = vec![0.0f32; n * dout];
    for i in 0..n {
        for j in 0..dout {
            y[i * dout + j] = (0..din)
                .map(|p| x[i * din + p] * w_true[p * dout + j])
                .sum();
        }
    }
    let mut store = ParamStore::new(be.clone());
    let w = store
        .add("w", Tensor::zeros(&be, &[din, dout]).unwrap(), false)
        .unwrap();
    let mut opt = AdamW::new(AdamWConfig::default());
    let sched = WarmupCosine {
        peak: 0.1,
        floor: 0.001,
        warmup: 10,
        total: 400,
    };
    let mut mse = f64::INFINITY;
    for step in 0..400 {
        let mut tape = Tape::new(&store);
        let xv = tape.constant(Tensor::from_host(&be, &[n, din], &x).unwrap());
        let wv = tape.param(w);
        let out = matmul(&mut tape, xv, wv, false, false).unwrap();
        let pred = tape.value(out).to_host(&be).unwrap();
        // d(½·mean‖pred − y‖²)/d pred, computed on the host for this test.
        let resid: Vec<f32> = pred
            .iter()
            .zip(&y)
            .map(|(p, t)| (p - t) / n as f32)
            .collect();
        mse = resid
            .iter()
            .map(|&r| f64::from(r * n as f32).powi(2))
            .sum::<f64>()
            / n as f64;
        let grads = tape.backward_with_seed(out, resid).unwrap();
        drop(tape);
        opt.step(&mut store, &grads, sched.lr(step)).unwrap();
    }
    assert!(
        mse < 1e-3,
        "seed {seed}: regression did not converge, mse {mse}"
    );
}

#[test]
fn ramp_schedule() {
    assert_eq!(ramp(0, 2, 4, 1.0), 0.0);
    assert_eq!(ramp(2, 2, 4, 1.0), 0.0);
    assert_eq!(ramp(3, 2, 4, 1.0), 0.25);
    assert_eq!(ramp(6, 2, 4, 1.0), 1.0);
    assert_eq!(ramp(60, 2, 4, 0.5), 0.5);
    assert_eq!(ramp(1, 2, 0, 1.0), 0.0);
    assert_eq!(ramp(2, 2, 0, 1.0), 1.0);
}
