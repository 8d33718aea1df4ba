//! CGRA alignment loss (METHOD.md §4, docs/METHOD-NOTES.md): the forward
//! against an f64 host implementation of the definition, loss and gradients
//! against the naive composition of plain tape ops (l2_normalize, matmul,
//! softmax, mean_pool), and finite-difference gradient checks at awkward
//! sizes (B 1/3, Ta 1/7/13, Tv 5/9, d 7/33).

use diccae_engine::autograd::{ParamStore, Tape, Var};
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::error::Result;
use diccae_engine::gradcheck::{GradCheck, all_close, check_gradients, op_error, test_seed};
use diccae_engine::ops::cgra::cgra_loss;
use diccae_engine::ops::cgra::kernels::CGRA_EPS;
use diccae_engine::ops::elementwise::{add, scale};
use diccae_engine::ops::matmul::matmul;
use diccae_engine::ops::norm::l2_normalize;
use diccae_engine::ops::softmax::softmax;
use diccae_engine::ops::tokens::{mean_pool, reshape};
use diccae_engine::rng::{normal_vec, seeded};
use diccae_engine::tensor::Tensor;

/// (B, Ta, Tv, d, τ).
const CASES: [(usize, usize, usize, usize, f32); 6] = [
    (1, 1, 5, 7, 1.0),
    (3, 7, 9, 33, 1.0),
    (3, 13, 5, 7, 0.2),
    (1, 13, 9, 33, 0.5),
    (3, 1, 9, 7, 0.1),
    (2, 129, 70, 65, 0.3),
];

fn cos64(x: &[f64], y: &[f64]) -> f64 {
    let e = f64::from(CGRA_EPS);
    let n = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt().max(e);
    x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>() / (n(x) * n(y))
}

/// The CGRA loss by definition in f64, forming `Ã` and `Ṽ` in full.
fn cgra_ref(ha: &[f32], hv: &[f32], b: usize, ta: usize, tv: usize, d: usize, tau: f64) -> f64 {
    let e = f64::from(CGRA_EPS);
    let norm_rows = |x: &[f32], t: usize| -> Vec<Vec<f64>> {
        (0..t)
            .map(|i| {
                let r: Vec<f64> = x[i * d..(i + 1) * d]
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect();
                let n = r.iter().map(|a| a * a).sum::<f64>().sqrt().max(e);
                r.iter().map(|a| a / n).collect()
            })
            .collect()
    };
    let mut total = 0.0;
    for c in 0..b {
        let a = &ha[c * ta * d..(c + 1) * ta * d];
        let v = &hv[c * tv * d..(c + 1) * tv * d];
        let (an, vn) = (norm_rows(a, ta), norm_rows(v, tv));
        let m: Vec<Vec<f64>> = (0..ta)
            .map(|i| {
                (0..tv)
                    .map(|j| (0..d).map(|k| an[i][k] * vn[j][k]).sum::<f64>() / tau)
                    .collect()
            })
            .collect();
        // Row softmax P and column softmax Q.
        let mut p = m.clone();
        for row in &mut p {
            let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = row.iter().map(|x| (x - mx).exp()).sum();
            row.iter_mut().for_each(|x| *x = (*x - mx).exp() / s);
        }
        let mut q = m.clone();
        for j in 0..tv {
            let mx = (0..ta).map(|i| m[i][j]).fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = (0..ta).map(|i| (m[i][j] - mx).exp()).sum();
            for i in 0..ta {
                q[i][j] = (m[i][j] - mx).exp() / s;
            }
        }
        // Ã = P·V [Ta, d], Ṽ = Qᵀ·A [Tv, d], then the four means.
        let at = |i: usize, k: usize| f64::from(a[i * d + k]);
        let vt = |j: usize, k: usize| f64::from(v[j * d + k]);
        let a_tilde: Vec<Vec<f64>> = (0..ta)
            .map(|i| {
                (0..d)
                    .map(|k| (0..tv).map(|j| p[i][j] * vt(j, k)).sum())
                    .collect()
            })
            .collect();
        let v_tilde: Vec<Vec<f64>> = (0..tv)
            .map(|j| {
                (0..d)
                    .map(|k| (0..ta).map(|i| q[i][j] * at(i, k)).sum())
                    .collect()
            })
            .collect();
        let mean = |rows: &dyn Fn(usize, usize) -> f64, t: usize| -> Vec<f64> {
            (0..d)
                .map(|k| (0..t).map(|i| rows(i, k)).sum::<f64>() / t as f64)
                .collect()
        };
        let abar = mean(&at, ta);
        let vbar = mean(&vt, tv);
        let atil = mean(&|i, k| a_tilde[i][k], ta);
        let vtil = mean(&|j, k| v_tilde[j][k], tv);
        total += (1.0 - cos64(&abar, &vtil)) + (1.0 - cos64(&vbar, &atil));
    }
    total / b as f64
}

/// `Σ_b cos(x_b, y_b)` of `[B, d]` rows as a `[1, 1]` tape value.
fn sum_cos(tape: &mut Tape<'_, CpuBackend>, x: Var, y: Var, b: usize, d: usize) -> Result<Var> {
    let xn = l2_normalize(tape, x, CGRA_EPS)?;
    let yn = l2_normalize(tape, y, CGRA_EPS)?;
    let xr = reshape(tape, xn, &[b, 1, d])?;
    let yr = reshape(tape, yn, &[b, d, 1])?;
    let dots = matmul(tape, xr, yr, false, false)?; // [B, 1, 1]
    let row = reshape(tape, dots, &[1, b])?;
    let ones = tape.constant(Tensor::from_host(tape.backend(), &[b, 1], &vec![1.0; b])?);
    matmul(tape, row, ones, false, false)
}

/// `−mean_b(cos(ā, ṽ) + cos(v̄, ã))` (the loss minus its constant 2) by
/// composing plain tape ops, `Ã` and `Ṽ` formed in full.
fn naive(tape: &mut Tape<'_, CpuBackend>, ha: Var, hv: Var, tau: f32) -> Result<Var> {
    let (b, d) = (tape.shape(ha)[0], tape.shape(ha)[2]);
    let an = l2_normalize(tape, ha, CGRA_EPS)?;
    let vn = l2_normalize(tape, hv, CGRA_EPS)?;
    let m = matmul(tape, an, vn, false, true)?; // [B, Ta, Tv]
    let m = scale(tape, m, 1.0 / tau)?;
    let p = softmax(tape, m)?;
    let a_tilde = matmul(tape, p, hv, false, false)?; // [B, Ta, d]
    let mt = matmul(tape, vn, an, false, true)?; // [B, Tv, Ta] = Mᵀ
    let mt = scale(tape, mt, 1.0 / tau)?;
    let qt = softmax(tape, mt)?; // softmax_col(M)ᵀ
    let v_tilde = matmul(tape, qt, ha, false, false)?; // [B, Tv, d]
    let abar = mean_pool(tape, ha)?;
    let vbar = mean_pool(tape, hv)?;
    let atil = mean_pool(tape, a_tilde)?;
    let vtil = mean_pool(tape, v_tilde)?;
    let c1 = sum_cos(tape, abar, vtil, b, d)?;
    let c2 = sum_cos(tape, vbar, atil, b, d)?;
    let s = add(tape, c1, c2)?;
    scale(tape, s, -1.0 / b as f32)
}

/// Loss and both gradients of `f` on the CPU tape.
fn run<F>(ha: &[f32], hv: &[f32], sa: &[usize], sv: &[usize], f: F) -> (f32, Vec<f32>, Vec<f32>)
where
    F: Fn(&mut Tape<'_, CpuBackend>, Var, Var) -> Result<Var>,
{
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    let mut tape = Tape::new(&store);
    let a = tape.leaf(Tensor::from_host(&be, sa, ha).unwrap());
    let v = tape.leaf(Tensor::from_host(&be, sv, hv).unwrap());
    let out = f(&mut tape, a, v).unwrap();
    let grads = tape.backward_with_seed(out, vec![1.0]).unwrap();
    (
        tape.value(out).buf()[0],
        grads.var(a).unwrap().clone(),
        grads.var(v).unwrap().clone(),
    )
}

/// `all_close` with an absolute tolerance relative to the reference's largest entry.
fn close_scaled(got: &[f32], want: &[f32], rtol: f32) -> std::result::Result<(), String> {
    let peak = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    all_close(got, want, rtol, rtol * peak.max(1e-30))
}

#[test]
fn cgra_forward_matches_f64_reference() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for &(b, ta, tv, d, tau) in &CASES {
        let mut ha = normal_vec(&mut rng, b * ta * d, 1.0);
        let hv = normal_vec(&mut rng, b * tv * d, 0.5);
        // An all-zero audio token (norm below ε) in the last clip.
        ha[(b * ta - 1) * d..b * ta * d].fill(0.0);
        let (sa, sv) = ([b, ta, d], [b, tv, d]);
        let (loss, _, _) = run(&ha, &hv, &sa, &sv, |t, a, v| cgra_loss(t, a, v, tau));
        let want = cgra_ref(&ha, &hv, b, ta, tv, d, f64::from(tau));
        // f32 logits, softmaxes and pooled sums of ≤ 129 terms: 2e-5 absolute
        // on a loss of order 1 (it lies in [0, 4]).
        assert!(
            (f64::from(loss) - want).abs() <= 2e-5,
            "seed {seed} B{b} Ta{ta} Tv{tv} d{d} tau{tau}: loss {loss} vs f64 {want}"
        );
    }
}

#[test]
fn cgra_matches_naive_composition() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for &(b, ta, tv, d, tau) in &CASES {
        let ha = normal_vec(&mut rng, b * ta * d, 1.0);
        let hv = normal_vec(&mut rng, b * tv * d, 0.5);
        let (sa, sv) = ([b, ta, d], [b, tv, d]);
        let (loss, ga, gv) = run(&ha, &hv, &sa, &sv, |t, a, v| cgra_loss(t, a, v, tau));
        let (neg, na, nv) = run(&ha, &hv, &sa, &sv, |t, a, v| naive(t, a, v, tau));
        let ctx = format!("seed {seed} B{b} Ta{ta} Tv{tv} d{d} tau{tau}");
        assert!(
            (loss - (2.0 + neg)).abs() <= 1e-5,
            "{ctx}: fused {loss} vs composed {}",
            2.0 + neg
        );
        // Gradients: different summation orders of f32 products; 1e-3 of the peak.
        close_scaled(&ga, &na, 1e-3).unwrap_or_else(|e| panic!("{ctx} dha: {e}"));
        close_scaled(&gv, &nv, 1e-3).unwrap_or_else(|e| panic!("{ctx} dhv: {e}"));
    }
}

/// Gradient coordinates are of order 1e-3..1e-1 here, so the default
/// absolute tolerance (2e-3) would pass too much: use 1e-4, above the f32
/// rounding of the loss divided by 2·eps (~1e-5), and 2e-2 relative.
const CGRA_CHECK: GradCheck = GradCheck {
    eps: 5e-3,
    rtol: 2e-2,
    atol: 1e-4,
    max_coords: 32,
};

#[test]
fn cgra_gradients_match_finite_differences() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for &(b, ta, tv, d, tau) in &CASES[..5] {
        let ha = normal_vec(&mut rng, b * ta * d, 1.0);
        let hv = normal_vec(&mut rng, b * tv * d, 0.5);
        let inputs = [(vec![b, ta, d], ha), (vec![b, tv, d], hv)];
        check_gradients(
            &format!("cgra B{b} Ta{ta} Tv{tv} d{d} tau{tau}"),
            seed,
            &inputs,
            &CGRA_CHECK,
            |t, v| cgra_loss(t, v[0], v[1], tau),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn cgra_of_identical_modalities_is_small_and_grads_are_optional() {
    // Identical token sets with a sharp softmax: each guided feature is
    // nearly its own token, so both cosines approach 1.
    let seed = test_seed();
    let mut rng = seeded(seed);
    let (b, t, d) = (2, 6, 16);
    let h = normal_vec(&mut rng, b * t * d, 1.0);
    let (loss, _, _) = run(&h, &h, &[b, t, d], &[b, t, d], |tp, a, v| {
        cgra_loss(tp, a, v, 0.01)
    });
    // Rounding may take a cosine a few ulp past 1.
    assert!((-1e-5..1e-3).contains(&loss), "seed {seed}: loss {loss}");

    // Only one input requiring a gradient: the other stays untouched.
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    let mut tape = Tape::new(&store);
    let a = tape.leaf(Tensor::from_host(&be, &[b, t, d], &h).unwrap());
    let v = tape.constant(Tensor::from_host(&be, &[b, t, d], &h).unwrap());
    let out = cgra_loss(&mut tape, a, v, 1.0).unwrap();
    let grads = tape.backward(out).unwrap();
    assert!(grads.var(a).is_some());
    assert!(grads.var(v).is_none());
}

#[test]
fn cgra_rejects_bad_shapes_and_temperatures() {
    let msg = op_error(&[&[2, 3, 4], &[3, 5, 4]], |t, v| {
        cgra_loss(t, v[0], v[1], 1.0)
    });
    assert!(
        msg.contains("[2, 3, 4]") && msg.contains("[3, 5, 4]"),
        "{msg}"
    );
    let msg = op_error(&[&[2, 3, 4], &[2, 5, 6]], |t, v| {
        cgra_loss(t, v[0], v[1], 1.0)
    });
    assert!(msg.contains("cgra_loss"), "{msg}");
    let msg = op_error(&[&[2, 0, 4], &[2, 5, 4]], |t, v| {
        cgra_loss(t, v[0], v[1], 1.0)
    });
    assert!(msg.contains("at least 1"), "{msg}");
    let msg = op_error(&[&[2, 12], &[2, 5, 4]], |t, v| {
        cgra_loss(t, v[0], v[1], 1.0)
    });
    assert!(msg.contains("[2, 12]"), "{msg}");
    let msg = op_error(&[&[1, 3, 4], &[1, 5, 4]], |t, v| {
        cgra_loss(t, v[0], v[1], 0.0)
    });
    assert!(msg.contains("temperature"), "{msg}");
}
