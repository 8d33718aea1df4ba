//! Elementwise ops: forward against f64 host formulas, gradients against
//! finite differences at awkward sizes, the parallel paths at sizes above
//! the threshold, and shape errors.

use diccae_engine::autograd::{Tape, Var};
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::gradcheck::{self, GradCheck, all_close, check_gradients, op_error, test_seed};
use diccae_engine::ops::ElementwiseKernels;
use diccae_engine::ops::elementwise::{add, bias_add, broadcast_add, gelu, scale, sigmoid};
use diccae_engine::rng::{normal_vec, seeded, uniform_vec};

const ROWS: [usize; 3] = [1, 7, 33];
const DIMS: [usize; 4] = [1, 5, 33, 129];

/// Runs `f` on fresh constants and returns its output on the host.
fn forward(
    inputs: &[(Vec<usize>, Vec<f32>)],
    f: impl Fn(&mut Tape<'_, CpuBackend>, &[Var]) -> diccae_engine::Result<Var>,
) -> Vec<f32> {
    gradcheck::forward(inputs, &f).unwrap()
}

/// GELU (tanh approximation) in f64.
fn gelu_f64(x: f64) -> f64 {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
}

#[test]
fn forward_matches_host_formulas() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for &rows in &ROWS {
        for &d in &DIMS {
            let x = normal_vec(&mut rng, rows * d, 1.0);
            let y = normal_vec(&mut rng, rows * d, 1.0);
            let b = normal_vec(&mut rng, d, 1.0);
            let ctx = |op: &str, e: String| format!("seed {seed} {op} {rows}x{d}: {e}");
            let got = forward(
                &[(vec![rows, d], x.clone()), (vec![rows, d], y.clone())],
                |t, v| add(t, v[0], v[1]),
            );
            let want: Vec<f32> = x
                .iter()
                .zip(&y)
                .map(|(&a, &b)| (f64::from(a) + f64::from(b)) as f32)
                .collect();
            all_close(&got, &want, 1e-6, 1e-6).unwrap_or_else(|e| panic!("{}", ctx("add", e)));

            let got = forward(
                &[(vec![rows, d], x.clone()), (vec![d], b.clone())],
                |t, v| bias_add(t, v[0], v[1]),
            );
            let want: Vec<f32> = x
                .iter()
                .enumerate()
                .map(|(i, &a)| (f64::from(a) + f64::from(b[i % d])) as f32)
                .collect();
            all_close(&got, &want, 1e-6, 1e-6).unwrap_or_else(|e| panic!("{}", ctx("bias_add", e)));

            // broadcast_add: x [rows, d] plus e [d] on every batch entry.
            let got = forward(
                &[(vec![rows, d], x.clone()), (vec![d], b.clone())],
                |t, v| broadcast_add(t, v[0], v[1]),
            );
            all_close(&got, &want, 1e-6, 1e-6)
                .unwrap_or_else(|e| panic!("{}", ctx("broadcast_add", e)));

            let got = forward(&[(vec![rows, d], x.clone())], |t, v| scale(t, v[0], -0.37));
            let want: Vec<f32> = x
                .iter()
                .map(|&a| (-0.37f64 * f64::from(a)) as f32)
                .collect();
            all_close(&got, &want, 1e-6, 1e-7).unwrap_or_else(|e| panic!("{}", ctx("scale", e)));

            let got = forward(&[(vec![rows, d], x.clone())], |t, v| gelu(t, v[0]));
            let want: Vec<f32> = x.iter().map(|&a| gelu_f64(f64::from(a)) as f32).collect();
            all_close(&got, &want, 1e-5, 1e-6).unwrap_or_else(|e| panic!("{}", ctx("gelu", e)));
        }
    }
}

#[test]
fn broadcast_add_adds_to_every_batch_entry() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let (batch, t, d) = (3, 7, 5);
    let x = normal_vec(&mut rng, batch * t * d, 1.0);
    let e = normal_vec(&mut rng, t * d, 1.0);
    let got = forward(
        &[(vec![batch, t, d], x.clone()), (vec![t, d], e.clone())],
        |tp, v| broadcast_add(tp, v[0], v[1]),
    );
    let want: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, &a)| (f64::from(a) + f64::from(e[i % (t * d)])) as f32)
        .collect();
    all_close(&got, &want, 1e-6, 1e-6).unwrap_or_else(|err| panic!("seed {seed}: {err}"));
}

#[test]
fn gradients_match_finite_differences() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let cfg = GradCheck::default();
    for &rows in &ROWS {
        for &d in &DIMS {
            let x = (vec![rows, d], normal_vec(&mut rng, rows * d, 1.0));
            let y = (vec![rows, d], normal_vec(&mut rng, rows * d, 1.0));
            let b = (vec![d], normal_vec(&mut rng, d, 1.0));
            let name = |op: &str| format!("{op} {rows}x{d}");
            let inputs = [x.clone(), y.clone()];
            check_gradients(&name("add"), seed, &inputs, &cfg, |t, v| add(t, v[0], v[1]))
                .unwrap_or_else(|e| panic!("{e}"));
            let inputs = [x.clone(), b.clone()];
            check_gradients(&name("bias_add"), seed, &inputs, &cfg, |t, v| {
                bias_add(t, v[0], v[1])
            })
            .unwrap_or_else(|e| panic!("{e}"));
            let inputs = [x.clone()];
            check_gradients(&name("scale"), seed, &inputs, &cfg, |t, v| {
                scale(t, v[0], 1.7)
            })
            .unwrap_or_else(|e| panic!("{e}"));
            check_gradients(&name("gelu"), seed, &inputs, &cfg, |t, v| gelu(t, v[0]))
                .unwrap_or_else(|e| panic!("{e}"));
            check_gradients(&name("sigmoid"), seed, &inputs, &cfg, |t, v| {
                sigmoid(t, v[0])
            })
            .unwrap_or_else(|e| panic!("{e}"));
            // broadcast_add over a 3-D batch: x [2, rows, d] + e [rows, d].
            let inputs = [
                (vec![2, rows, d], normal_vec(&mut rng, 2 * rows * d, 1.0)),
                (vec![rows, d], normal_vec(&mut rng, rows * d, 1.0)),
            ];
            check_gradients(&name("broadcast_add"), seed, &inputs, &cfg, |t, v| {
                broadcast_add(t, v[0], v[1])
            })
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn bias_add_over_leading_dims_and_shared_operands() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let cfg = GradCheck::default();
    // A 3-D input folds both leading dims into rows.
    let inputs = [
        (vec![3, 7, 33], normal_vec(&mut rng, 3 * 7 * 33, 1.0)),
        (vec![33], normal_vec(&mut rng, 33, 1.0)),
    ];
    check_gradients("bias_add 3x7x33", seed, &inputs, &cfg, |t, v| {
        bias_add(t, v[0], v[1])
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // The same value on both sides of an add, then through GELU and scale.
    let inputs = [(vec![7, 5], normal_vec(&mut rng, 35, 1.0))];
    check_gradients("x + x composed", seed, &inputs, &cfg, |t, v| {
        let s = add(t, v[0], v[0])?;
        let g = gelu(t, s)?;
        scale(t, g, 0.5)
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn gelu_gradient_near_zero_and_at_three() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let cfg = GradCheck::default();
    let mut near = uniform_vec(&mut rng, 33, -0.05, 0.05);
    near.push(0.0);
    let mut far = uniform_vec(&mut rng, 33, 2.8, 3.2);
    far.extend(uniform_vec(&mut rng, 33, -3.2, -2.8));
    for (what, x) in [("near 0", near), ("|x|≈3", far)] {
        let inputs = [(vec![x.len()], x.clone())];
        check_gradients(&format!("gelu {what}"), seed, &inputs, &cfg, |t, v| {
            gelu(t, v[0])
        })
        .unwrap_or_else(|e| panic!("{e}"));
        // The kernel's derivative against an f64 central difference of the
        // f64 formula, far tighter than the f32 check above.
        let be = CpuBackend::new();
        let ones = vec![1.0f32; x.len()];
        let got = be.gelu_bwd(&x, &ones).unwrap();
        let h = 1e-6;
        let want: Vec<f32> = x
            .iter()
            .map(|&a| {
                let a = f64::from(a);
                ((gelu_f64(a + h) - gelu_f64(a - h)) / (2.0 * h)) as f32
            })
            .collect();
        // Near x = −3, 1 + tanh(u) ≈ 3e-3 carries the f32 rounding of tanh
        // (≤ 4e-7): about 1e-6 absolute in the derivative.
        all_close(&got, &want, 1e-5, 5e-6)
            .unwrap_or_else(|e| panic!("seed {seed} gelu' {what}: {e}"));
    }
}

#[test]
fn gelu_is_accurate_over_a_wide_range() {
    // Every 1e-3 over [-12, 12], past where the kernel's tanh saturates.
    let be = CpuBackend::new();
    let x: Vec<f32> = (-12_000..=12_000).map(|i| i as f32 * 1e-3).collect();
    let got = be.gelu_fwd(&x).unwrap();
    let want: Vec<f32> = x.iter().map(|&a| gelu_f64(f64::from(a)) as f32).collect();
    // f32 rounding of 1 + tanh(u) for u ≪ 0 bounds the absolute error.
    all_close(&got, &want, 1e-5, 1e-6).unwrap_or_else(|e| panic!("gelu: {e}"));
    let ones = vec![1.0f32; x.len()];
    let got = be.gelu_bwd(&x, &ones).unwrap();
    let h = 1e-6;
    let want: Vec<f32> = x
        .iter()
        .map(|&a| {
            let a = f64::from(a);
            ((gelu_f64(a + h) - gelu_f64(a - h)) / (2.0 * h)) as f32
        })
        .collect();
    // The kernel's tanh saturates at ±1 for |u| ≥ 7.9 (x ≲ −4.6), dropping a
    // tail below 3e-7 of 1 + tanh: the derivative there is off by < 5e-6.
    all_close(&got, &want, 1e-5, 5e-6).unwrap_or_else(|e| panic!("gelu': {e}"));
}

#[test]
fn parallel_paths_match_host() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    // Many short rows (row blocks, partial-row reduction), a few long rows
    // (column blocks), rows longer than one task (rows split as well), and
    // enough wide partial rows that their reduction is parallel too.
    for (rows, d) in [
        (301, 129),
        (1031, 33),
        (3, 20_011),
        (40, 1_031),
        (113, 2_049),
    ] {
        let x = normal_vec(&mut rng, rows * d, 1.0);
        let b = normal_vec(&mut rng, d, 1.0);
        let ctx = |op: &str, e: String| format!("seed {seed} {op} {rows}x{d}: {e}");

        let got = be.add_row(&x, &b, rows, d).unwrap();
        let want: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &a)| (f64::from(a) + f64::from(b[i % d])) as f32)
            .collect();
        all_close(&got, &want, 1e-6, 1e-6).unwrap_or_else(|e| panic!("{}", ctx("add_row", e)));

        let got = be.sum_rows(&x, rows, d).unwrap();
        let mut want = vec![0.0f64; d];
        for (i, &a) in x.iter().enumerate() {
            want[i % d] += f64::from(a);
        }
        let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        // Sums of up to ~1000 unit normals in f32: a few ulps of √rows.
        all_close(&got, &want, 1e-5, 1e-4).unwrap_or_else(|e| panic!("{}", ctx("sum_rows", e)));

        let got = be.gelu_fwd(&x).unwrap();
        let want: Vec<f32> = x.iter().map(|&a| gelu_f64(f64::from(a)) as f32).collect();
        all_close(&got, &want, 1e-5, 1e-6).unwrap_or_else(|e| panic!("{}", ctx("gelu", e)));

        let y = normal_vec(&mut rng, rows * d, 1.0);
        let got = be.add(&x, &y).unwrap();
        let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
        assert_eq!(got, want, "seed {seed} add {rows}x{d}");
        let got = be.scaled(&x, 3.0).unwrap();
        let want: Vec<f32> = x.iter().map(|a| 3.0 * a).collect();
        assert_eq!(got, want, "seed {seed} scaled {rows}x{d}");
    }
}

#[test]
fn sum_rows_is_reproducible() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    let (rows, d) = (2_003, 65);
    let x = normal_vec(&mut rng, rows * d, 1.0);
    let first = be.sum_rows(&x, rows, d).unwrap();
    for _ in 0..3 {
        assert_eq!(be.sum_rows(&x, rows, d).unwrap(), first, "seed {seed}");
    }
}

#[test]
fn shape_mismatches_are_errors() {
    let err = op_error(&[&[3, 4], &[4, 3]], |t, v| add(t, v[0], v[1]));
    assert!(err.contains("[3, 4]") && err.contains("[4, 3]"), "{err}");
    let err = op_error(&[&[3, 4], &[5]], |t, v| bias_add(t, v[0], v[1]));
    assert!(err.contains("bias [5]") && err.contains("[4]"), "{err}");
    let err = op_error(&[&[3, 4], &[1, 4]], |t, v| bias_add(t, v[0], v[1]));
    assert!(err.contains("bias [1, 4]"), "{err}");
    let err = op_error(&[&[], &[1]], |t, v| bias_add(t, v[0], v[1]));
    assert!(err.contains("no last dim"), "{err}");
    let err = op_error(&[&[2, 3, 4], &[3, 5]], |t, v| broadcast_add(t, v[0], v[1]));
    assert!(err.contains("e [3, 5]") && err.contains("[3, 4]"), "{err}");
    let err = op_error(&[&[2, 3, 4], &[2, 3, 4]], |t, v| {
        broadcast_add(t, v[0], v[1])
    });
    assert!(err.contains("expected [3, 4]"), "{err}");
    // The kernels check lengths themselves too.
    let be = CpuBackend::new();
    assert!(be.add_row(&vec![0.0; 12], &vec![0.0; 5], 3, 4).is_err());
    assert!(be.sum_rows(&vec![0.0; 11], 3, 4).is_err());
    assert!(be.add(&vec![0.0; 3], &vec![0.0; 4]).is_err());
    assert!(be.gelu_bwd(&vec![0.0; 3], &vec![0.0; 4]).is_err());
}

#[test]
fn sigmoid_matches_the_host_formula_and_saturates_cleanly() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    // Awkward sizes, one above the parallel threshold, plus the extremes.
    for n in [1usize, 7, 129, 70_001] {
        let mut x = normal_vec(&mut rng, n, 4.0);
        if n == 7 {
            x[..4].copy_from_slice(&[-200.0, 200.0, f32::INFINITY, f32::NEG_INFINITY]);
        }
        let got = forward(&[(vec![n], x.clone())], |t, v| sigmoid(t, v[0]));
        let want: Vec<f32> = x
            .iter()
            .map(|&a| (1.0 / (1.0 + (-f64::from(a)).exp())) as f32)
            .collect();
        all_close(&got, &want, 1e-6, 1e-7)
            .unwrap_or_else(|e| panic!("seed {seed} sigmoid n={n}: {e}"));
        let be = CpuBackend::new();
        let g = normal_vec(&mut rng, n, 1.0);
        // The backward from the f32 output it is given (1 − y cancels near 1).
        let y = got;
        let got = be.sigmoid_bwd(&y, &g).unwrap();
        let want: Vec<f32> = y
            .iter()
            .zip(&g)
            .map(|(&y, &g)| (f64::from(g) * f64::from(y) * (1.0 - f64::from(y))) as f32)
            .collect();
        all_close(&got, &want, 1e-5, 1e-7)
            .unwrap_or_else(|e| panic!("seed {seed} sigmoid' n={n}: {e}"));
    }
}
