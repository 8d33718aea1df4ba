//! The InfoNCE CUDA kernels (kernels/infonce.cu) under host emulation,
//! against the CPU backend's `InfoNceKernels` on random awkward shapes that
//! span several 32×32 tiles (and leave partial ones).
//!
//! Tolerances: loss and LSE rtol 1e-5 / atol 1e-5 (f32 sums in another
//! order); gradients rtol 1e-4 / atol 1e-6 (sums of B products of two exps).

mod emu_common;

use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::ops::infonce::kernels::{InfoNceGrads, InfoNceKernels, InfoNceSpec};
use emu_common::{Arg, assert_close, dims, launch, rng, unit_rows};

/// Forward on the emulator: (loss, row LSE, column LSE).
fn emu_fwd(s: &InfoNceSpec, za: &[f32], zv: &[f32]) -> (f32, Vec<f32>, Vec<f32>) {
    let (b, d) = (s.batch, s.dim);
    let inv_tau = 1.0 / s.tau;
    let blocks = b.div_ceil(32);
    let mut row = vec![0.0f32; b];
    let mut col = vec![0.0f32; b];
    let (bi, di) = (b as i32, d as i32);
    launch(
        "infonce_lse_f32",
        dims(blocks, 256, 0),
        &mut [
            Arg::In(za),
            Arg::In(zv),
            Arg::I32(bi),
            Arg::I32(di),
            Arg::F32(inv_tau),
            Arg::Out(&mut row),
        ],
    )
    .unwrap();
    launch(
        "infonce_lse_f32",
        dims(blocks, 256, 0),
        &mut [
            Arg::In(zv),
            Arg::In(za),
            Arg::I32(bi),
            Arg::I32(di),
            Arg::F32(inv_tau),
            Arg::Out(&mut col),
        ],
    )
    .unwrap();
    let mut loss = vec![0.0f32; 1];
    launch(
        "infonce_loss_f32",
        dims(1, 256, 0),
        &mut [
            Arg::In(za),
            Arg::In(zv),
            Arg::In(&row),
            Arg::In(&col),
            Arg::I32(bi),
            Arg::I32(di),
            Arg::F32(inv_tau),
            Arg::Out(&mut loss),
        ],
    )
    .unwrap();
    (loss[0], row, col)
}

/// Backward on the emulator, adding into `d_own`.
#[allow(clippy::too_many_arguments)]
fn emu_bwd(
    s: &InfoNceSpec,
    own: &[f32],
    other: &[f32],
    own_lse: &[f32],
    other_lse: &[f32],
    g: f32,
    d_own: &mut [f32],
) {
    let (b, d) = (s.batch, s.dim);
    let shared = (32 * d + 32 * 33) * 4;
    launch(
        "infonce_bwd_f32",
        dims(b.div_ceil(32), 256, shared),
        &mut [
            Arg::In(own),
            Arg::In(other),
            Arg::In(own_lse),
            Arg::In(other_lse),
            Arg::In(&[g]),
            Arg::I32(b as i32),
            Arg::I32(d as i32),
            Arg::F32(1.0 / s.tau),
            Arg::Out(d_own),
        ],
    )
    .unwrap();
}

#[test]
fn infonce_forward_and_backward_match_the_cpu_backend() {
    let mut r = rng("infonce_emulated");
    let cpu = CpuBackend::new();
    for &(b, d, tau) in &[
        (1usize, 7usize, 0.1f32),
        (33, 45, 0.07),
        (70, 33, 0.2),
        (97, 16, 0.05),
    ] {
        let shape = format!("B={b} d={d} tau={tau}");
        let spec = InfoNceSpec {
            batch: b,
            dim: d,
            tau,
        };
        let za = unit_rows(&mut r, b, d);
        let zv = unit_rows(&mut r, b, d);
        let (loss, row, col) = emu_fwd(&spec, &za, &zv);
        let (cpu_loss, cpu_lse) = cpu.infonce_fwd(&spec, &za, &zv).unwrap();
        assert_close("loss", &shape, &[loss], &cpu_loss, 1e-5, 1e-5);
        assert_close("row LSE", &shape, &row, &cpu_lse.row, 1e-5, 1e-5);
        assert_close("column LSE", &shape, &col, &cpu_lse.col, 1e-5, 1e-5);

        // Gradients accumulate: start both from the same non-zero values.
        let g = 0.75f32;
        let start = unit_rows(&mut r, b, d);
        let (mut dza, mut dzv) = (start.clone(), start.clone());
        emu_bwd(&spec, &za, &zv, &row, &col, g, &mut dza);
        emu_bwd(&spec, &zv, &za, &col, &row, g, &mut dzv);
        let (mut cdza, mut cdzv) = (start.clone(), start);
        cpu.infonce_bwd(
            &spec,
            &za,
            &zv,
            &cpu_lse,
            &vec![g],
            InfoNceGrads {
                dza: Some(&mut cdza),
                dzv: Some(&mut cdzv),
            },
        )
        .unwrap();
        assert_close("dza", &shape, &dza, &cdza, 1e-4, 1e-6);
        assert_close("dzv", &shape, &dzv, &cdzv, 1e-4, 1e-6);
    }
}
