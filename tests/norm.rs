//! LayerNorm and L2 normalisation: forward and backward against f64 host
//! formulas, gradients against finite differences at awkward sizes, the
//! clamped L2 branch, the parallel paths, and argument errors.

use diccae_engine::autograd::{Tape, Var};
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::gradcheck::{self, GradCheck, all_close, check_gradients, op_error, test_seed};
use diccae_engine::ops::norm::{l2_normalize, layer_norm};
use diccae_engine::ops::{LayerNormNeeds, NormKernels, NormSpec};
use diccae_engine::rng::{SeededRng, normal_vec, seeded, uniform_vec};
use diccae_engine::tensor::Tensor;

const ROWS: [usize; 3] = [1, 7, 33];
const EPS: f32 = 1e-5;

/// Runs `f` on fresh constants and returns its output on the host.
fn forward(
    inputs: &[(Vec<usize>, Vec<f32>)],
    f: impl Fn(&mut Tape<'_, CpuBackend>, &[Var]) -> diccae_engine::Result<Var>,
) -> Vec<f32> {
    gradcheck::forward(inputs, &f).unwrap()
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// LayerNorm rows whose variance is far above the step of a finite
/// difference. With d = 2 the output is ±1 except where the two values are
/// within ~√eps of each other, so there the second value is kept at least
/// 1 away from the first.
fn ln_input(rng: &mut SeededRng, rows: usize, d: usize) -> Vec<f32> {
    let mut x = normal_vec(rng, rows * d, 1.0);
    if d == 2 {
        for row in x.chunks_exact_mut(2) {
            let gap = (1.0 + row[1].abs()).copysign(row[1]);
            row[1] = row[0] + gap;
        }
    }
    x
}

/// LayerNorm forward in f64: `(y, xhat, rstd)`.
fn ln_host(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    d: usize,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut y = Vec::with_capacity(x.len());
    let mut xhat = Vec::with_capacity(x.len());
    let mut rstds = Vec::new();
    for row in x.chunks_exact(d) {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64;
        let var = row
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / d as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        for (j, &v) in row.iter().enumerate() {
            let h = (f64::from(v) - mean) * rstd;
            xhat.push(h);
            y.push(h * f64::from(gamma[j]) + f64::from(beta[j]));
        }
        rstds.push(rstd);
    }
    (y, xhat, rstds)
}

/// LayerNorm backward in f64 from the definition's derivative:
/// `(dx, dgamma, dbeta)`.
fn ln_host_bwd(
    x: &[f32],
    gamma: &[f32],
    g: &[f32],
    d: usize,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let beta = vec![0.0; d];
    let (_, xhat, rstd) = ln_host(x, gamma, &beta, d, eps);
    let mut dx = Vec::with_capacity(x.len());
    let mut dgamma = vec![0.0f64; d];
    let mut dbeta = vec![0.0f64; d];
    for (r, (h, g)) in xhat.chunks_exact(d).zip(g.chunks_exact(d)).enumerate() {
        let dh: Vec<f64> = g
            .iter()
            .zip(gamma)
            .map(|(&g, &w)| f64::from(g) * f64::from(w))
            .collect();
        let m1 = dh.iter().sum::<f64>() / d as f64;
        let m2 = dh.iter().zip(h).map(|(a, b)| a * b).sum::<f64>() / d as f64;
        for j in 0..d {
            dx.push(rstd[r] * (dh[j] - m1 - h[j] * m2));
            dgamma[j] += f64::from(g[j]) * h[j];
            dbeta[j] += f64::from(g[j]);
        }
    }
    (dx, dgamma, dbeta)
}

/// L2 normalisation in f64.
fn l2_host(x: &[f32], d: usize, eps: f64) -> Vec<f64> {
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks_exact(d) {
        let n = row
            .iter()
            .map(|&v| f64::from(v).powi(2))
            .sum::<f64>()
            .sqrt();
        y.extend(row.iter().map(|&v| f64::from(v) / n.max(eps)));
    }
    y
}

/// L2 backward in f64, both branches.
fn l2_host_bwd(x: &[f32], g: &[f32], d: usize, eps: f64) -> Vec<f64> {
    let mut dx = Vec::with_capacity(x.len());
    for (row, g) in x.chunks_exact(d).zip(g.chunks_exact(d)) {
        let n = row
            .iter()
            .map(|&v| f64::from(v).powi(2))
            .sum::<f64>()
            .sqrt();
        if n > eps {
            let y: Vec<f64> = row.iter().map(|&v| f64::from(v) / n).collect();
            let yg: f64 = y.iter().zip(g).map(|(a, &b)| a * f64::from(b)).sum();
            dx.extend(y.iter().zip(g).map(|(y, &g)| (f64::from(g) - y * yg) / n));
        } else {
            dx.extend(g.iter().map(|&g| f64::from(g) / eps));
        }
    }
    dx
}

#[test]
fn layer_norm_forward_matches_host() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for &rows in &ROWS {
        for d in [1, 2, 5, 33, 129] {
            let x = ln_input(&mut rng, rows, d);
            let gamma = normal_vec(&mut rng, d, 1.0);
            let beta = normal_vec(&mut rng, d, 1.0);
            let got = forward(
                &[
                    (vec![rows, d], x.clone()),
                    (vec![d], gamma.clone()),
                    (vec![d], beta.clone()),
                ],
                |t, v| layer_norm(t, v[0], v[1], v[2], EPS),
            );
            let (want, _, _) = ln_host(&x, &gamma, &beta, d, f64::from(EPS));
            all_close(&got, &to_f32(&want), 1e-4, 1e-5)
                .unwrap_or_else(|e| panic!("seed {seed} layer_norm {rows}x{d}: {e}"));
        }
    }
}

#[test]
fn layer_norm_rows_are_standardised_with_unit_affine() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let (rows, d) = (33, 129);
    // Rows with their own offsets and scales.
    let mut x = normal_vec(&mut rng, rows * d, 1.0);
    let offsets = uniform_vec(&mut rng, rows, -5.0, 5.0);
    let scales = uniform_vec(&mut rng, rows, 0.2, 4.0);
    for (r, row) in x.chunks_exact_mut(d).enumerate() {
        row.iter_mut()
            .for_each(|v| *v = *v * scales[r] + offsets[r]);
    }
    let y = forward(
        &[
            (vec![3, 11, d], x),
            (vec![d], vec![1.0; d]),
            (vec![d], vec![0.0; d]),
        ],
        |t, v| layer_norm(t, v[0], v[1], v[2], EPS),
    );
    for (r, row) in y.chunks_exact(d).enumerate() {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64;
        let var = row
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / d as f64;
        assert!(mean.abs() < 1e-5, "seed {seed} row {r}: mean {mean}");
        // var = σ²/(σ² + eps) with σ ≥ 0.2-ish: 1 within about 1e-3.
        assert!((var - 1.0).abs() < 1e-3, "seed {seed} row {r}: var {var}");
    }
}

#[test]
fn layer_norm_gradients_match_finite_differences() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let cfg = GradCheck::default();
    for &rows in &ROWS {
        for d in [2, 5, 33, 129] {
            let inputs = [
                (vec![rows, d], ln_input(&mut rng, rows, d)),
                (vec![d], normal_vec(&mut rng, d, 1.0)),
                (vec![d], normal_vec(&mut rng, d, 1.0)),
            ];
            check_gradients(
                &format!("layer_norm {rows}x{d}"),
                seed,
                &inputs,
                &cfg,
                |t, v| layer_norm(t, v[0], v[1], v[2], EPS),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn layer_norm_backward_matches_host_on_parallel_sizes() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    // Small (one block), and above the parallel threshold (several blocks).
    for (rows, d) in [(7, 33), (301, 129), (67, 769)] {
        let spec = NormSpec { rows, d, eps: EPS };
        let x = normal_vec(&mut rng, rows * d, 2.0);
        let gamma = normal_vec(&mut rng, d, 1.0);
        let beta = normal_vec(&mut rng, d, 1.0);
        let g = normal_vec(&mut rng, rows * d, 1.0);
        let ctx = |what: &str, e: String| format!("seed {seed} {rows}x{d} {what}: {e}");
        let (y, stats) = be.layer_norm_fwd(&spec, &x, &gamma, &beta).unwrap();
        let (want_y, _, _) = ln_host(&x, &gamma, &beta, d, f64::from(EPS));
        all_close(&y, &to_f32(&want_y), 1e-4, 1e-5).unwrap_or_else(|e| panic!("{}", ctx("y", e)));

        let (dx, dgamma, dbeta) = ln_host_bwd(&x, &gamma, &g, d, f64::from(EPS));
        let all = LayerNormNeeds {
            dx: true,
            params: true,
        };
        let grads = be
            .layer_norm_bwd(&spec, &x, &gamma, &stats, &g, all)
            .unwrap();
        all_close(grads.dx.as_ref().unwrap(), &to_f32(&dx), 1e-3, 1e-4)
            .unwrap_or_else(|e| panic!("{}", ctx("dx", e)));
        // Column sums over up to 301 rows.
        all_close(grads.dgamma.as_ref().unwrap(), &to_f32(&dgamma), 1e-4, 1e-4)
            .unwrap_or_else(|e| panic!("{}", ctx("dgamma", e)));
        all_close(grads.dbeta.as_ref().unwrap(), &to_f32(&dbeta), 1e-4, 1e-4)
            .unwrap_or_else(|e| panic!("{}", ctx("dbeta", e)));

        // Asking for part of the gradients gives the same values.
        let only_dx = LayerNormNeeds {
            dx: true,
            params: false,
        };
        let part = be
            .layer_norm_bwd(&spec, &x, &gamma, &stats, &g, only_dx)
            .unwrap();
        assert!(part.dgamma.is_none() && part.dbeta.is_none());
        assert_eq!(part.dx, grads.dx, "seed {seed} {rows}x{d}");
        let only_params = LayerNormNeeds {
            dx: false,
            params: true,
        };
        let part = be
            .layer_norm_bwd(&spec, &x, &gamma, &stats, &g, only_params)
            .unwrap();
        assert!(part.dx.is_none());
        assert_eq!(part.dgamma, grads.dgamma, "seed {seed} {rows}x{d}");
        assert_eq!(part.dbeta, grads.dbeta, "seed {seed} {rows}x{d}");
    }
}

#[test]
fn layer_norm_gradients_of_parameters_only() {
    // x a constant, gamma and beta leaves: the op still gives their gradients.
    let seed = test_seed();
    let mut rng = seeded(seed);
    let (rows, d) = (7, 33);
    let x = normal_vec(&mut rng, rows * d, 1.0);
    let inputs = [
        (vec![d], normal_vec(&mut rng, d, 1.0)),
        (vec![d], normal_vec(&mut rng, d, 1.0)),
    ];
    check_gradients(
        "layer_norm params only",
        seed,
        &inputs,
        &GradCheck::default(),
        |t, v| {
            let xv = t.constant(Tensor::from_host(t.backend(), &[rows, d], &x)?);
            layer_norm(t, xv, v[0], v[1], EPS)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn l2_normalize_forward_gives_unit_rows() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for &rows in &ROWS {
        for d in [1, 5, 33, 129] {
            let x = normal_vec(&mut rng, rows * d, 3.0);
            let y = forward(&[(vec![rows, d], x.clone())], |t, v| {
                l2_normalize(t, v[0], 1e-8)
            });
            let want = l2_host(&x, d, 1e-8);
            all_close(&y, &to_f32(&want), 1e-5, 1e-6)
                .unwrap_or_else(|e| panic!("seed {seed} l2 {rows}x{d}: {e}"));
            for (r, row) in y.chunks_exact(d).enumerate() {
                let n = row
                    .iter()
                    .map(|&v| f64::from(v).powi(2))
                    .sum::<f64>()
                    .sqrt();
                assert!(
                    (n - 1.0).abs() < 1e-5,
                    "seed {seed} {rows}x{d} row {r}: norm {n}"
                );
            }
        }
    }
}

#[test]
fn l2_normalize_gradients_match_finite_differences() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let cfg = GradCheck::default();
    for &rows in &ROWS {
        for d in [1, 5, 33, 129] {
            // Rows of norm ≥ 1 so a step of 1e-2 cannot cross the clamp at
            // d = 1 (where y = sign(x)).
            let mut x = normal_vec(&mut rng, rows * d, 1.0);
            for row in x.chunks_exact_mut(d) {
                let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-3);
                let target = 1.0 + row[0].abs();
                row.iter_mut().for_each(|v| *v *= target / n);
            }
            let inputs = [(vec![rows, d], x)];
            check_gradients(
                &format!("l2_normalize {rows}x{d}"),
                seed,
                &inputs,
                &cfg,
                |t, v| l2_normalize(t, v[0], 1e-6),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn l2_normalize_clamped_rows() {
    // eps = 0.5: odd rows have norm ≤ 0.12 (clamped, y = x/eps, linear), even
    // rows norm in [1, 2] (normalised). Finite-difference steps of 1e-2 stay
    // on their side of the clamp.
    let seed = test_seed();
    let mut rng = seeded(seed);
    let eps = 0.5f32;
    let cfg = GradCheck::default();
    for (rows, d) in [(7, 1), (7, 5), (33, 129)] {
        let mut x = normal_vec(&mut rng, rows * d, 1.0);
        let factors = uniform_vec(&mut rng, rows, 1.0, 2.0);
        for (r, row) in x.chunks_exact_mut(d).enumerate() {
            let n = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-3);
            let target = if r % 2 == 1 {
                0.1 * factors[r] / 2.0
            } else {
                factors[r]
            };
            row.iter_mut().for_each(|v| *v *= target / n);
        }
        let ctx = |what: &str, e: String| format!("seed {seed} {rows}x{d} {what}: {e}");
        let y = forward(&[(vec![rows, d], x.clone())], |t, v| {
            l2_normalize(t, v[0], eps)
        });
        all_close(&y, &to_f32(&l2_host(&x, d, f64::from(eps))), 1e-5, 1e-6)
            .unwrap_or_else(|e| panic!("{}", ctx("forward", e)));
        let inputs = [(vec![rows, d], x.clone())];
        check_gradients(
            &format!("l2_normalize clamped {rows}x{d}"),
            seed,
            &inputs,
            &cfg,
            |t, v| l2_normalize(t, v[0], eps),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // Against the f64 backward, both branches.
        let be = CpuBackend::new();
        let spec = NormSpec { rows, d, eps };
        let g = normal_vec(&mut rng, rows * d, 1.0);
        let (_, norms) = be.l2_normalize_fwd(&spec, &x).unwrap();
        let dx = be.l2_normalize_bwd(&spec, &x, &norms, &g).unwrap();
        all_close(
            &dx,
            &to_f32(&l2_host_bwd(&x, &g, d, f64::from(eps))),
            1e-4,
            1e-5,
        )
        .unwrap_or_else(|e| panic!("{}", ctx("backward", e)));
    }
}

#[test]
fn l2_normalize_parallel_sizes_match_host() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    for (rows, d) in [(301, 129), (67, 769)] {
        let spec = NormSpec { rows, d, eps: 1e-6 };
        let x = normal_vec(&mut rng, rows * d, 1.0);
        let g = normal_vec(&mut rng, rows * d, 1.0);
        let ctx = |what: &str, e: String| format!("seed {seed} {rows}x{d} {what}: {e}");
        let (y, norms) = be.l2_normalize_fwd(&spec, &x).unwrap();
        all_close(&y, &to_f32(&l2_host(&x, d, 1e-6)), 1e-5, 1e-6)
            .unwrap_or_else(|e| panic!("{}", ctx("forward", e)));
        let dx = be.l2_normalize_bwd(&spec, &x, &norms, &g).unwrap();
        all_close(&dx, &to_f32(&l2_host_bwd(&x, &g, d, 1e-6)), 1e-4, 1e-5)
            .unwrap_or_else(|e| panic!("{}", ctx("backward", e)));
    }
}

#[test]
fn bad_shapes_and_eps_are_errors() {
    let ln = |eps: f32| {
        move |t: &mut Tape<'_, CpuBackend>, v: &[Var]| layer_norm(t, v[0], v[1], v[2], eps)
    };
    let err = op_error(&[&[3, 4], &[5], &[4]], ln(EPS));
    assert!(err.contains("gamma [5]") && err.contains("[3, 4]"), "{err}");
    let err = op_error(&[&[3, 4], &[4], &[1, 4]], ln(EPS));
    assert!(
        err.contains("beta [1, 4]") && err.contains("expected [4]"),
        "{err}"
    );
    let err = op_error(&[&[], &[1], &[1]], ln(EPS));
    assert!(err.contains("scalar"), "{err}");
    let err = op_error(&[&[3, 0], &[0], &[0]], ln(EPS));
    assert!(err.contains("length 0"), "{err}");
    for eps in [0.0, -1e-5, f32::NAN, f32::INFINITY] {
        let err = op_error(&[&[3, 4], &[4], &[4]], ln(eps));
        assert!(err.contains("eps"), "{err}");
        let err = op_error(&[&[3, 4]], |t, v| l2_normalize(t, v[0], eps));
        assert!(err.contains("eps"), "{err}");
    }
    let err = op_error(&[&[]], |t, v| l2_normalize(t, v[0], 1e-6));
    assert!(err.contains("scalar"), "{err}");
    // The kernels check lengths themselves too.
    let be = CpuBackend::new();
    let spec = NormSpec {
        rows: 3,
        d: 4,
        eps: EPS,
    };
    assert!(
        be.layer_norm_fwd(&spec, &vec![0.0; 12], &vec![1.0; 5], &vec![0.0; 4])
            .is_err()
    );
    assert!(be.l2_normalize_fwd(&spec, &vec![0.0; 11]).is_err());
    let (_, norms) = be.l2_normalize_fwd(&spec, &vec![1.0; 12]).unwrap();
    assert!(
        be.l2_normalize_bwd(&spec, &vec![1.0; 12], &norms, &vec![0.0; 13])
            .is_err()
    );
}
