//! The L2-normalisation CUDA kernels (kernels/l2norm.cu) under host
//! emulation, against the CPU backend's `NormKernels::l2_normalize_fwd/_bwd`
//! on random awkward shapes (d = 1, widths not multiples of 32, one row),
//! with one row below `eps` so the clamped branch runs too.
//!
//! Tolerances: y and norms rtol 1e-5 / atol 1e-6 (f32 row sums in another
//! order); dx rtol 1e-4 / atol 1e-5 (g minus its projection on y).

mod emu_common;

use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::ops::norm::kernels::{NormKernels, NormSpec};
use diccae_engine::rng::normal_vec;
use emu_common::{Arg, assert_close, dims, launch, rng};

#[test]
fn l2_normalize_forward_and_backward_match_the_cpu_backend() {
    let mut r = rng("l2norm_emulated");
    let cpu = CpuBackend::new();
    for &(rows, d) in &[(1usize, 1usize), (7, 5), (33, 257), (129, 33), (3, 769)] {
        let shape = format!("rows={rows} d={d}");
        let spec = NormSpec { rows, d, eps: 1e-3 };
        let mut x = normal_vec(&mut r, rows * d, 1.5);
        // The last row's norm falls below eps (the clamped branch).
        x[(rows - 1) * d..].iter_mut().for_each(|v| *v *= 1e-5);
        let g = normal_vec(&mut r, rows * d, 1.0);

        let mut y = vec![f32::NAN; rows * d];
        let mut norms = vec![f32::NAN; rows];
        launch(
            "l2_normalize_fwd_f32",
            dims(rows.div_ceil(8), 256, 0),
            &mut [
                Arg::In(&x),
                Arg::I32(rows as i32),
                Arg::I32(d as i32),
                Arg::F32(spec.eps),
                Arg::Out(&mut y),
                Arg::Out(&mut norms),
            ],
        )
        .unwrap();
        let (cy, cnorms) = cpu.l2_normalize_fwd(&spec, &x).unwrap();
        assert_close("y", &shape, &y, &cy, 1e-5, 1e-6);
        assert_close("norms", &shape, &norms, &cnorms, 1e-5, 1e-6);

        let mut dx = vec![f32::NAN; rows * d];
        launch(
            "l2_normalize_bwd_f32",
            dims(rows.div_ceil(8), 256, 0),
            &mut [
                Arg::In(&x),
                Arg::In(&cnorms),
                Arg::In(&g),
                Arg::I32(rows as i32),
                Arg::I32(d as i32),
                Arg::F32(spec.eps),
                Arg::Out(&mut dx),
            ],
        )
        .unwrap();
        let cdx = cpu.l2_normalize_bwd(&spec, &x, &cnorms, &g).unwrap();
        assert_close("dx", &shape, &dx, &cdx, 1e-4, 1e-5);
    }
}
