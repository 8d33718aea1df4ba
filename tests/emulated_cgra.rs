//! The CGRA CUDA kernels (kernels/cgra.cu, with sq_norms_f32 and
//! sum_scale_f32 from kernels/reduce.cu) under host emulation, against the
//! CPU backend's `CgraKernels` on random awkward shapes whose token counts
//! span several 32-row tiles and leave partial ones.
//!
//! Tolerances: loss, LSEs, pooling weights and pooled vectors rtol 1e-4 /
//! atol 1e-5 (f32 sums of up to a few hundred terms in another order, and
//! the CPU's polynomial `exp`); gradients rtol 1e-3 / atol 1e-3 of the
//! largest CPU gradient entry (two chained softmax reductions then a
//! product over the other side's tokens).

mod emu_common;

use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::ops::cgra::kernels::{CGRA_EPS, CgraGrads, CgraKernels, CgraSaved, CgraSpec};
use diccae_engine::rng::normal_vec;
use emu_common::{Arg, assert_close, dims, dims3, launch, rng};

/// What the emulated forward produces.
struct EmuForward {
    loss: f32,
    saved: CgraSaved<Vec<f32>>,
}

/// A (row tiles × clips) grid of 256-thread blocks.
fn tile_grid(t_own: usize, batch: usize, shared: usize) -> emu_common::Dims {
    dims3([t_own.div_ceil(32), batch, 1], 256, shared)
}

fn sq_norms(x: &[f32], rows: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; rows];
    launch(
        "sq_norms_f32",
        dims(rows.div_ceil(8), 256, 0),
        &mut [
            Arg::In(x),
            Arg::I32(rows as i32),
            Arg::I32(d as i32),
            Arg::Out(&mut out),
        ],
    )
    .unwrap();
    out
}

/// `cgra_lse_f32` for one side.
fn lse(
    s: &CgraSpec,
    own: &[f32],
    other: &[f32],
    own_sq: &[f32],
    other_sq: &[f32],
    t_own: usize,
    t_other: usize,
) -> Vec<f32> {
    let mut out = vec![0.0f32; s.batch * t_own];
    launch(
        "cgra_lse_f32",
        tile_grid(t_own, s.batch, 0),
        &mut [
            Arg::In(own),
            Arg::In(other),
            Arg::In(own_sq),
            Arg::In(other_sq),
            Arg::I32(t_own as i32),
            Arg::I32(t_other as i32),
            Arg::I32(s.dim as i32),
            Arg::F32(1.0 / s.tau),
            Arg::F32(s.eps),
            Arg::Out(&mut out),
        ],
    )
    .unwrap();
    out
}

/// `cgra_mean_prob_f32` (with `other_lse`) or `cgra_prob_dot_f32` (with
/// `(own_lse, val)`) for one side.
#[allow(clippy::too_many_arguments)]
fn stream(
    kernel: &str,
    s: &CgraSpec,
    own: &[f32],
    other: &[f32],
    own_sq: &[f32],
    other_sq: &[f32],
    vectors: &[&[f32]],
    t_own: usize,
    t_other: usize,
) -> Vec<f32> {
    let mut out = vec![0.0f32; s.batch * t_own];
    let mut args = vec![
        Arg::In(own),
        Arg::In(other),
        Arg::In(own_sq),
        Arg::In(other_sq),
    ];
    args.extend(vectors.iter().map(|v| Arg::In(v)));
    args.extend([
        Arg::I32(t_own as i32),
        Arg::I32(t_other as i32),
        Arg::I32(s.dim as i32),
        Arg::F32(1.0 / s.tau),
        Arg::F32(s.eps),
        Arg::Out(&mut out),
    ]);
    launch(kernel, tile_grid(t_own, s.batch, 0), &mut args).unwrap();
    out
}

fn emu_fwd(s: &CgraSpec, ha: &[f32], hv: &[f32]) -> EmuForward {
    let (b, ta, tv, d) = (s.batch, s.ta, s.tv, s.dim);
    let sq_a = sq_norms(ha, b * ta, d);
    let sq_v = sq_norms(hv, b * tv, d);
    let row_lse = lse(s, ha, hv, &sq_a, &sq_v, ta, tv);
    let col_lse = lse(s, hv, ha, &sq_v, &sq_a, tv, ta);
    let mp = "cgra_mean_prob_f32";
    let weight_a = stream(mp, s, ha, hv, &sq_a, &sq_v, &[&col_lse], ta, tv);
    let weight_v = stream(mp, s, hv, ha, &sq_v, &sq_a, &[&row_lse], tv, ta);
    let mut pooled = vec![0.0f32; b * 4 * d];
    let mut clip_loss = vec![0.0f32; b];
    launch(
        "cgra_pool_f32",
        dims(b, 256, 0),
        &mut [
            Arg::In(ha),
            Arg::In(hv),
            Arg::In(&weight_a),
            Arg::In(&weight_v),
            Arg::I32(ta as i32),
            Arg::I32(tv as i32),
            Arg::I32(d as i32),
            Arg::F32(s.eps),
            Arg::Out(&mut pooled),
            Arg::Out(&mut clip_loss),
        ],
    )
    .unwrap();
    let mut loss = vec![0.0f32];
    launch(
        "sum_scale_f32",
        dims(1, 256, 0),
        &mut [
            Arg::In(&clip_loss),
            Arg::I32(b as i32),
            Arg::F32(1.0 / b as f32),
            Arg::Out(&mut loss),
        ],
    )
    .unwrap();
    EmuForward {
        loss: loss[0],
        saved: CgraSaved {
            sq_norm_a: sq_a,
            sq_norm_v: sq_v,
            row_lse,
            col_lse,
            weight_a,
            weight_v,
            pooled,
        },
    }
}

/// The emulated backward, adding into `dha` and `dhv`.
fn emu_bwd(
    s: &CgraSpec,
    ha: &[f32],
    hv: &[f32],
    sv: &CgraSaved<Vec<f32>>,
    g: f32,
    dha: &mut [f32],
    dhv: &mut [f32],
) {
    let (b, ta, tv, d) = (s.batch, s.ta, s.tv, s.dim);
    let mut coef = vec![0.0f32; b * 4 * d];
    let mut alpha = vec![0.0f32; b * tv];
    let mut beta = vec![0.0f32; b * ta];
    launch(
        "cgra_bwd_coef_f32",
        dims(b, 256, 2 * d * 4),
        &mut [
            Arg::In(ha),
            Arg::In(hv),
            Arg::In(&sv.pooled),
            Arg::In(&[g]),
            Arg::I32(b as i32),
            Arg::I32(ta as i32),
            Arg::I32(tv as i32),
            Arg::I32(d as i32),
            Arg::F32(s.eps),
            Arg::Out(&mut coef),
            Arg::Out(&mut alpha),
            Arg::Out(&mut beta),
        ],
    )
    .unwrap();
    let (sa, svv) = (&sv.sq_norm_a, &sv.sq_norm_v);
    let pd = "cgra_prob_dot_f32";
    let rho = stream(pd, s, ha, hv, sa, svv, &[&sv.row_lse, &alpha], ta, tv);
    let kappa = stream(pd, s, hv, ha, svv, sa, &[&sv.col_lse, &beta], tv, ta);
    let shared = (32 * d + 32 * 33) * 4;
    // (own, other, own_sq, other_sq, own_lse, oth_lse, x1, x2, y1, y2, weight, bar, tilde, t_own, t_other, s_own, s_oth)
    let sides = [
        (
            ha,
            hv,
            sa,
            svv,
            &sv.row_lse,
            &sv.col_lse,
            &rho,
            &beta,
            &alpha,
            &kappa,
            &sv.weight_a,
            0,
            3,
            ta,
            tv,
        ),
        (
            hv,
            ha,
            svv,
            sa,
            &sv.col_lse,
            &sv.row_lse,
            &kappa,
            &alpha,
            &beta,
            &rho,
            &sv.weight_v,
            1,
            2,
            tv,
            ta,
        ),
    ];
    for (side, out) in sides.into_iter().zip([dha, dhv]) {
        let (own, other, osq, tsq, olse, tlse, x1, x2, y1, y2, wt, bar, tilde, t_own, t_other) =
            side;
        launch(
            "cgra_bwd_f32",
            tile_grid(t_own, b, shared),
            &mut [
                Arg::In(own),
                Arg::In(other),
                Arg::In(osq),
                Arg::In(tsq),
                Arg::In(olse),
                Arg::In(tlse),
                Arg::In(x1),
                Arg::In(x2),
                Arg::In(y1),
                Arg::In(y2),
                Arg::In(wt),
                Arg::In(&coef),
                Arg::I32(bar),
                Arg::I32(tilde),
                Arg::I32(t_own as i32),
                Arg::I32(t_other as i32),
                Arg::I32(d as i32),
                Arg::F32(1.0 / t_own as f32),
                Arg::F32(1.0 / t_other as f32),
                Arg::F32(1.0 / s.tau),
                Arg::F32(s.eps),
                Arg::Out(out),
            ],
        )
        .unwrap();
    }
}

/// `assert_close` with the absolute tolerance scaled by the reference's peak.
fn assert_close_scaled(what: &str, shape: &str, got: &[f32], want: &[f32], rtol: f32) {
    let peak = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert_close(what, shape, got, want, rtol, rtol * peak.max(1e-30));
}

/// Runs both forwards, compares everything they produce, returns both.
fn compare_forward(
    cpu: &CpuBackend,
    spec: &CgraSpec,
    ha: &[f32],
    hv: &[f32],
    shape: &str,
) -> (EmuForward, CgraSaved<Vec<f32>>) {
    let emu = emu_fwd(spec, ha, hv);
    let (cpu_loss, cpu_saved) = cpu.cgra_fwd(spec, &ha.to_vec(), &hv.to_vec()).unwrap();
    let (e, c) = (&emu.saved, &cpu_saved);
    assert_close("loss", shape, &[emu.loss], &cpu_loss, 1e-4, 1e-5);
    assert_close("‖A‖²", shape, &e.sq_norm_a, &c.sq_norm_a, 1e-4, 1e-5);
    assert_close("‖V‖²", shape, &e.sq_norm_v, &c.sq_norm_v, 1e-4, 1e-5);
    assert_close("row LSE", shape, &e.row_lse, &c.row_lse, 1e-4, 1e-5);
    assert_close("column LSE", shape, &e.col_lse, &c.col_lse, 1e-4, 1e-5);
    assert_close("u", shape, &e.weight_a, &c.weight_a, 1e-4, 1e-5);
    assert_close("w", shape, &e.weight_v, &c.weight_v, 1e-4, 1e-5);
    assert_close("pooled", shape, &e.pooled, &c.pooled, 1e-4, 1e-5);
    (emu, cpu_saved)
}

#[test]
fn cgra_forward_and_backward_match_the_cpu_backend() {
    let mut r = rng("cgra_emulated");
    let cpu = CpuBackend::new();
    for &(b, ta, tv, d, tau) in &[
        (1usize, 1usize, 5usize, 7usize, 1.0f32),
        (3, 37, 70, 45, 0.5),
        (2, 65, 9, 33, 0.1),
        (1, 40, 33, 300, 1.0),
    ] {
        let shape = format!("B={b} Ta={ta} Tv={tv} d={d} tau={tau}");
        let spec = CgraSpec {
            batch: b,
            ta,
            tv,
            dim: d,
            tau,
            eps: CGRA_EPS,
        };
        let ha = normal_vec(&mut r, b * ta * d, 1.0);
        let hv = normal_vec(&mut r, b * tv * d, 0.5);
        // Forward with an all-zero audio token (norm below ε) in the last
        // clip; its gradient is amplified by 1/ε, so the backward is compared
        // on ordinary tokens only.
        let mut zeroed = ha.clone();
        zeroed[(b * ta - 1) * d..].fill(0.0);
        compare_forward(&cpu, &spec, &zeroed, &hv, &format!("{shape} (zero token)"));
        let (emu, cpu_saved) = compare_forward(&cpu, &spec, &ha, &hv, &shape);

        // Gradients accumulate: start both from the same non-zero values.
        let g = 0.75f32;
        let start_a = normal_vec(&mut r, b * ta * d, 0.01);
        let start_v = normal_vec(&mut r, b * tv * d, 0.01);
        let (mut dha, mut dhv) = (start_a.clone(), start_v.clone());
        emu_bwd(&spec, &ha, &hv, &emu.saved, g, &mut dha, &mut dhv);
        let (mut cdha, mut cdhv) = (start_a, start_v);
        cpu.cgra_bwd(
            &spec,
            &ha,
            &hv,
            &cpu_saved,
            &vec![g],
            CgraGrads {
                dha: Some(&mut cdha),
                dhv: Some(&mut cdhv),
            },
        )
        .unwrap();
        assert_close_scaled("dha", &shape, &dha, &cdha, 1e-3);
        assert_close_scaled("dhv", &shape, &dhv, &cdhv, 1e-3);
    }
}
