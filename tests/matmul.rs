//! Matrix product: forward against a naive triple loop, gradients against
//! finite differences, at awkward sizes.

use diccae_engine::autograd::{ParamStore, Tape};
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::gradcheck::{GradCheck, all_close, check_gradients, test_seed};
use diccae_engine::ops::matmul::matmul;
use diccae_engine::ops::{GemmSpec, MatmulKernels};
use diccae_engine::rng::{normal_vec, seeded};
use diccae_engine::tensor::Tensor;

/// op(A)·op(B) by definition, in f64.
fn naive(a: &[f32], b: &[f32], m: usize, n: usize, k: usize, ta: bool, tb: bool) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                let x = if ta { a[p * m + i] } else { a[i * k + p] };
                let y = if tb { b[j * k + p] } else { b[p * n + j] };
                s += f64::from(x) * f64::from(y);
            }
            c[i * n + j] = s as f32;
        }
    }
    c
}

const SIZES: [(usize, usize, usize); 4] = [(1, 1, 1), (7, 33, 5), (33, 7, 129), (129, 65, 33)];

#[test]
fn gemm_matches_naive_for_every_transpose_and_beta() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    for &(m, n, k) in &SIZES {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = normal_vec(&mut rng, m * k, 1.0);
            let b = normal_vec(&mut rng, k * n, 1.0);
            let c0 = normal_vec(&mut rng, m * n, 1.0);
            let mut c = c0.clone();
            let spec = GemmSpec::new(m, n, k).transposed(ta, tb).beta(0.5);
            let spec = GemmSpec { alpha: 2.0, ..spec };
            be.gemm(&spec, &a, &b, &mut c).unwrap();
            let want: Vec<f32> = naive(&a, &b, m, n, k, ta, tb)
                .iter()
                .zip(&c0)
                .map(|(p, c)| 2.0 * p + 0.5 * c)
                .collect();
            all_close(&c, &want, 1e-4, 1e-4)
                .unwrap_or_else(|e| panic!("seed {seed} m{m} n{n} k{k} ta{ta} tb{tb}: {e}"));
        }
    }
}

#[test]
fn batched_gemm_with_broadcast_b() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    let (batch, m, n, k) = (9, 7, 5, 33);
    let a = normal_vec(&mut rng, batch * m * k, 1.0);
    let b = normal_vec(&mut rng, k * n, 1.0);
    let mut c = vec![0.0; batch * m * n];
    let spec = GemmSpec::new(m, n, k).batched(batch, m * k, 0, m * n);
    be.gemm(&spec, &a, &b, &mut c).unwrap();
    for i in 0..batch {
        let want = naive(&a[i * m * k..(i + 1) * m * k], &b, m, n, k, false, false);
        all_close(&c[i * m * n..(i + 1) * m * n], &want, 1e-4, 1e-4)
            .unwrap_or_else(|e| panic!("seed {seed} batch {i}: {e}"));
    }
}

#[test]
fn matmul_gradients_match_finite_differences() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let cfg = GradCheck::default();
    for &(m, n, k) in &SIZES[..3] {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a_shape = if ta { vec![k, m] } else { vec![m, k] };
            let b_shape = if tb { vec![n, k] } else { vec![k, n] };
            let inputs = vec![
                (a_shape, normal_vec(&mut rng, m * k, 1.0)),
                (b_shape, normal_vec(&mut rng, k * n, 1.0)),
            ];
            check_gradients(
                &format!("matmul {m}x{n}x{k} ta{ta} tb{tb}"),
                seed,
                &inputs,
                &cfg,
                |t, v| matmul(t, v[0], v[1], ta, tb),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn batched_and_linear_matmul_gradients() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let cfg = GradCheck::default();
    // Linear map over leading dims: [3, 7, 5] · [5, 2].
    let inputs = vec![
        (vec![3, 7, 5], normal_vec(&mut rng, 105, 1.0)),
        (vec![5, 2], normal_vec(&mut rng, 10, 1.0)),
    ];
    check_gradients("linear", seed, &inputs, &cfg, |t, v| {
        matmul(t, v[0], v[1], false, false)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // Batched with transposes: [4, 7, 3]ᵀ · [4, 5, 7]ᵀ.
    for (ta, tb) in [(false, false), (true, true), (false, true)] {
        let a_shape = if ta { vec![4, 3, 7] } else { vec![4, 7, 3] };
        let b_shape = if tb { vec![4, 5, 3] } else { vec![4, 3, 5] };
        let inputs = vec![
            (a_shape, normal_vec(&mut rng, 84, 1.0)),
            (b_shape, normal_vec(&mut rng, 60, 1.0)),
        ];
        check_gradients("batched", seed, &inputs, &cfg, |t, v| {
            matmul(t, v[0], v[1], ta, tb)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn matmul_rejects_mismatched_shapes() {
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    let mut tape = Tape::new(&store);
    let a = tape.constant(Tensor::zeros(&be, &[3, 4]).unwrap());
    let b = tape.constant(Tensor::zeros(&be, &[5, 2]).unwrap());
    let err = matmul(&mut tape, a, b, false, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[3, 4]") && err.contains("[5, 2]"), "{err}");
}
