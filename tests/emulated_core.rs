//! The `BackendCore` CUDA kernels (kernels/core.cu: fill, axpy, scale; and
//! the two-pass sum of squares in kernels/reduce.cu) under host emulation,
//! against the CPU backend on awkward lengths, with small and large grids.
//!
//! Tolerances: fill and scale exact; axpy rtol 1e-6 / atol 1e-7 (a GPU build
//! may fuse it into an FMA); sum_squares relative 1e-12 (both sum in f64, in
//! another order, and the kernel returns it as an f32 pair good to ~48 bits).

mod emu_common;

use diccae_engine::backend::BackendCore;
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::rng::normal_vec;
use emu_common::{Arg, assert_close, dims, launch, rng};

/// Sum of squares on the emulator with `g` blocks in the first pass.
fn emu_sum_squares(x: &[f32], g: usize) -> f64 {
    let mut partials = vec![f32::NAN; 2 * g];
    launch(
        "sum_squares_partial_f32",
        dims(g, 256, 0),
        &mut [
            Arg::In(x),
            Arg::I32(x.len() as i32),
            Arg::Out(&mut partials),
        ],
    )
    .unwrap();
    let mut out = vec![f32::NAN; 2];
    launch(
        "sum_squares_final_f32",
        dims(1, 256, 0),
        &mut [Arg::In(&partials), Arg::I32(g as i32), Arg::Out(&mut out)],
    )
    .unwrap();
    f64::from(out[0]) + f64::from(out[1])
}

#[test]
fn fill_axpy_and_scale_match_the_cpu_backend() {
    let mut r = rng("core_emulated");
    let cpu = CpuBackend::new();
    for &n in &[1usize, 7, 33, 257, 1000] {
        let shape = format!("n={n}");
        let blocks = n.div_ceil(256).clamp(1, 2);
        let mut buf = vec![f32::NAN; n];
        launch(
            "fill_f32",
            dims(blocks, 256, 0),
            &mut [Arg::I32(n as i32), Arg::F32(-2.5), Arg::Out(&mut buf)],
        )
        .unwrap();
        let mut want = vec![0.0f32; n];
        cpu.fill(&mut want, -2.5).unwrap();
        assert_close("fill", &shape, &buf, &want, 0.0, 0.0);

        let x = normal_vec(&mut r, n, 1.0);
        let y0 = normal_vec(&mut r, n, 1.0);
        let mut y = y0.clone();
        launch(
            "axpy_f32",
            dims(blocks, 256, 0),
            &mut [
                Arg::F32(0.3),
                Arg::In(&x),
                Arg::I32(n as i32),
                Arg::Out(&mut y),
            ],
        )
        .unwrap();
        let mut want = y0.clone();
        cpu.axpy(0.3, &x, &mut want).unwrap();
        assert_close("axpy", &shape, &y, &want, 1e-6, 1e-7);

        let mut s = y0.clone();
        launch(
            "scale_f32",
            dims(blocks, 256, 0),
            &mut [Arg::F32(-1.7), Arg::I32(n as i32), Arg::Out(&mut s)],
        )
        .unwrap();
        let mut want = y0;
        cpu.scale(-1.7, &mut want).unwrap();
        assert_close("scale", &shape, &s, &want, 0.0, 0.0);
    }
}

#[test]
fn sum_squares_matches_the_cpu_backend() {
    let mut r = rng("sum_squares_emulated");
    let cpu = CpuBackend::new();
    for &n in &[1usize, 7, 33, 5000, 70_001] {
        let x = normal_vec(&mut r, n, 3.0);
        let want = cpu.sum_squares(&x).unwrap();
        for g in [1, 3, n.div_ceil(2048).min(1024)] {
            let got = emu_sum_squares(&x, g);
            let rel = (got - want).abs() / want.max(f64::MIN_POSITIVE);
            assert!(
                rel <= 1e-12,
                "sum_squares n={n} grid={g}: emulated {got} vs CPU {want} (relative {rel:e})"
            );
        }
    }
}
