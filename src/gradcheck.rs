//! Test support: finite-difference gradient checks and tolerant comparison.
//!
//! Public so that every op's tests (and a user's own ops) check gradients the
//! same way. Failures name the seed that reproduces them.

use rand::Rng;

use crate::autograd::{ParamStore, Tape, Var};
use crate::backend::cpu::CpuBackend;
use crate::error::Result;
use crate::rng::{seeded, uniform_vec};
use crate::tensor::Tensor;

/// The seed for a test's random inputs: `DICCAE_TEST_SEED` when set (to
/// replay a failure), otherwise fresh from the clock.
pub fn test_seed() -> u64 {
    match std::env::var("DICCAE_TEST_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("DICCAE_TEST_SEED must be an unsigned integer, got {s:?}")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    }
}

/// Settings of a finite-difference check. A coordinate passes when
/// `|analytic − numeric| ≤ atol + rtol·max(|analytic|, |numeric|)`.
#[derive(Clone, Copy, Debug)]
pub struct GradCheck {
    /// Central-difference step.
    pub eps: f32,
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// At most this many coordinates per input are probed (chosen at random).
    pub max_coords: usize,
}

impl Default for GradCheck {
    /// f32 central differences with step 1e-2: truncation error O(eps²) and
    /// rounding error O(1e-7/eps) both stay near 1e-3 relative for smooth ops.
    fn default() -> Self {
        GradCheck {
            eps: 1e-2,
            rtol: 2e-2,
            atol: 2e-3,
            max_coords: 48,
        }
    }
}

/// `Σ out·weights` in f64: the scalar whose gradient the check probes.
fn weighted_sum(out: &[f32], weights: &[f32]) -> f64 {
    out.iter()
        .zip(weights)
        .map(|(&o, &w)| f64::from(o) * f64::from(w))
        .sum()
}

/// Runs `f` on the CPU backend without recording gradients, with `inputs`
/// (shape, data) as its values, and returns its output on the host.
pub fn forward<F>(inputs: &[(Vec<usize>, Vec<f32>)], f: &F) -> Result<Vec<f32>>
where
    F: Fn(&mut Tape<'_, CpuBackend>, &[Var]) -> Result<Var>,
{
    let store = ParamStore::new(CpuBackend::new());
    let mut tape = Tape::no_grad(&store);
    let vars = leaves(&mut tape, inputs)?;
    let out = f(&mut tape, &vars)?;
    Ok(tape.value(out).buf().clone())
}

/// The error `f` returns on zero-filled inputs of `shapes` (for tests of an
/// op's shape checks); panics if `f` succeeds.
pub fn op_error<F>(shapes: &[&[usize]], f: F) -> String
where
    F: Fn(&mut Tape<'_, CpuBackend>, &[Var]) -> Result<Var>,
{
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    let mut tape = Tape::new(&store);
    let vars: Vec<Var> = shapes
        .iter()
        .map(|s| Tensor::zeros(&be, s).map(|t| tape.constant(t)))
        .collect::<Result<_>>()
        .unwrap_or_else(|e| panic!("cannot build inputs {shapes:?}: {e}"));
    match f(&mut tape, &vars) {
        Ok(_) => panic!("expected an error for inputs {shapes:?}"),
        Err(e) => e.to_string(),
    }
}

fn leaves(tape: &mut Tape<'_, CpuBackend>, inputs: &[(Vec<usize>, Vec<f32>)]) -> Result<Vec<Var>> {
    inputs
        .iter()
        .map(|(shape, data)| {
            let t = Tensor::from_host(tape.backend(), shape, data)?;
            Ok(tape.leaf(t))
        })
        .collect()
}

/// Compares the tape's gradients of `f` with central differences, for every
/// input in `inputs` (shape, data). `f` may return any shape: the check
/// differentiates `Σ f(x)·r` for random weights `r` drawn from `seed`.
/// Returns a description of every failing coordinate, naming the seed.
pub fn check_gradients<F>(
    name: &str,
    seed: u64,
    inputs: &[(Vec<usize>, Vec<f32>)],
    cfg: &GradCheck,
    f: F,
) -> std::result::Result<(), String>
where
    F: Fn(&mut Tape<'_, CpuBackend>, &[Var]) -> Result<Var>,
{
    let fail = |e: crate::error::Error| format!("{name} (seed {seed}): {e}");
    let store = ParamStore::new(CpuBackend::new());
    let mut tape = Tape::new(&store);
    let vars = leaves(&mut tape, inputs).map_err(fail)?;
    let out = f(&mut tape, &vars).map_err(fail)?;
    let mut rng = seeded(seed ^ 0x9e37_79b9_7f4a_7c15);
    let weights = uniform_vec(&mut rng, tape.value(out).numel(), -1.0, 1.0);
    let grads = tape
        .backward_with_seed(out, weights.clone())
        .map_err(fail)?;

    let mut failures = Vec::new();
    for (i, (shape, data)) in inputs.iter().enumerate() {
        let analytic = grads
            .var(vars[i])
            .cloned()
            .unwrap_or_else(|| vec![0.0; data.len()]);
        let coords: Vec<usize> = if data.len() <= cfg.max_coords {
            (0..data.len()).collect()
        } else {
            (0..cfg.max_coords)
                .map(|_| rng.random_range(0..data.len()))
                .collect()
        };
        for c in coords {
            let mut probe = inputs.to_vec();
            probe[i].1[c] = data[c] + cfg.eps;
            let plus = weighted_sum(&forward(&probe, &f).map_err(fail)?, &weights);
            probe[i].1[c] = data[c] - cfg.eps;
            let minus = weighted_sum(&forward(&probe, &f).map_err(fail)?, &weights);
            let numeric = (plus - minus) / (2.0 * f64::from(cfg.eps));
            let a = f64::from(analytic[c]);
            let tol = cfg.atol + cfg.rtol * a.abs().max(numeric.abs());
            let within = (a - numeric).abs() <= tol; // false for NaN
            if !within {
                failures.push(format!(
                    "input {i} {shape:?} coord {c}: analytic {a:.6e}, numeric {numeric:.6e}"
                ));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{name}: {} gradient coordinates off (seed {seed}; rerun with DICCAE_TEST_SEED={seed}):\n{}",
            failures.len(),
            failures.join("\n")
        ))
    }
}

/// Checks `|a − b| ≤ atol + rtol·|b|` elementwise; describes the worst miss.
pub fn all_close(a: &[f32], b: &[f32], rtol: f32, atol: f32) -> std::result::Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("lengths differ: {} vs {}", a.len(), b.len()));
    }
    let mut worst: Option<(usize, f32)> = None;
    let mut misses = 0usize;
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let excess = (x - y).abs() - (atol + rtol * y.abs());
        let within = excess <= 0.0; // false for NaN
        if !within {
            misses += 1;
            if worst.is_none_or(|(_, w)| excess > w || excess.is_nan()) {
                worst = Some((i, excess));
            }
        }
    }
    match worst {
        None => Ok(()),
        Some((i, _)) => Err(format!(
            "{misses} of {} elements differ; worst at {i}: {} vs {}",
            a.len(),
            a[i],
            b[i]
        )),
    }
}
