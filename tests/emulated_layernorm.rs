//! The LayerNorm CUDA kernels (kernels/layernorm.cu, plus sum_rows_f32 of
//! kernels/elementwise.cu for the chunked parameter gradients) under host
//! emulation, against the CPU backend's `NormKernels::layer_norm_fwd/_bwd`
//! on random awkward shapes (d = 1, widths not multiples of 32, one row,
//! rows spanning several blocks and row chunks).
//!
//! Tolerances: y, mean, rstd rtol 1e-5 / atol 1e-5 (f32 row sums in another
//! order); dx rtol 1e-4 / atol 1e-5 (a difference of three row terms);
//! dgamma and dbeta rtol 1e-5 / atol 5e-5 (column sums of up to 129 terms in
//! another order).

mod emu_common;

use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::ops::norm::kernels::{LayerNormNeeds, NormKernels, NormSpec};
use diccae_engine::rng::normal_vec;
use emu_common::{Arg, assert_close, dims, dims3, launch, rng};

/// (y, mean, rstd) on the emulator.
fn emu_fwd(s: &NormSpec, x: &[f32], gamma: &[f32], beta: &[f32]) -> [Vec<f32>; 3] {
    let mut y = vec![f32::NAN; s.rows * s.d];
    let mut mean = vec![f32::NAN; s.rows];
    let mut rstd = vec![f32::NAN; s.rows];
    launch(
        "layer_norm_fwd_f32",
        dims(s.rows.div_ceil(8), 256, 0),
        &mut [
            Arg::In(x),
            Arg::In(gamma),
            Arg::In(beta),
            Arg::I32(s.rows as i32),
            Arg::I32(s.d as i32),
            Arg::F32(s.eps),
            Arg::Out(&mut y),
            Arg::Out(&mut mean),
            Arg::Out(&mut rstd),
        ],
    )
    .unwrap();
    [y, mean, rstd]
}

/// Column sums of an `chunks × d` partial (one sum_rows_f32 launch).
fn reduce_partials(part: &[f32], chunks: usize, d: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; d];
    launch(
        "sum_rows_f32",
        dims3([d.div_ceil(32), 1, 1], 256, 0),
        &mut [
            Arg::In(part),
            Arg::I32(chunks as i32),
            Arg::I32(d as i32),
            Arg::I32(chunks as i32),
            Arg::Out(&mut out),
        ],
    )
    .unwrap();
    out
}

/// (dgamma, dbeta) on the emulator with row chunks of `split` rows.
fn emu_params(
    s: &NormSpec,
    x: &[f32],
    mean: &[f32],
    rstd: &[f32],
    g: &[f32],
    split: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (rows, d) = (s.rows, s.d);
    let chunks = rows.div_ceil(split);
    let mut pg = vec![f32::NAN; chunks * d];
    let mut pb = vec![f32::NAN; chunks * d];
    launch(
        "layer_norm_bwd_params_f32",
        dims3([d.div_ceil(32), chunks, 1], 256, 0),
        &mut [
            Arg::In(x),
            Arg::In(mean),
            Arg::In(rstd),
            Arg::In(g),
            Arg::I32(rows as i32),
            Arg::I32(d as i32),
            Arg::I32(split as i32),
            Arg::Out(&mut pg),
            Arg::Out(&mut pb),
        ],
    )
    .unwrap();
    if chunks == 1 {
        return (pg, pb);
    }
    (
        reduce_partials(&pg, chunks, d),
        reduce_partials(&pb, chunks, d),
    )
}

#[test]
fn layer_norm_forward_and_backward_match_the_cpu_backend() {
    let mut r = rng("layernorm_emulated");
    let cpu = CpuBackend::new();
    for &(rows, d) in &[(1usize, 1usize), (7, 5), (33, 257), (129, 33), (9, 769)] {
        let shape = format!("rows={rows} d={d}");
        let spec = NormSpec { rows, d, eps: 1e-5 };
        let x: Vec<f32> = normal_vec(&mut r, rows * d, 2.0)
            .iter()
            .map(|v| v + 0.5)
            .collect();
        let gamma = normal_vec(&mut r, d, 1.0);
        let beta = normal_vec(&mut r, d, 1.0);
        let g = normal_vec(&mut r, rows * d, 1.0);

        let [y, mean, rstd] = emu_fwd(&spec, &x, &gamma, &beta);
        let (cy, stats) = cpu.layer_norm_fwd(&spec, &x, &gamma, &beta).unwrap();
        assert_close("y", &shape, &y, &cy, 1e-5, 1e-5);
        assert_close("mean", &shape, &mean, &stats.mean, 1e-5, 1e-5);
        assert_close("rstd", &shape, &rstd, &stats.rstd, 1e-5, 1e-5);

        let needs = LayerNormNeeds {
            dx: true,
            params: true,
        };
        let grads = cpu
            .layer_norm_bwd(&spec, &x, &gamma, &stats, &g, needs)
            .unwrap();
        let mut dx = vec![f32::NAN; rows * d];
        launch(
            "layer_norm_bwd_dx_f32",
            dims(rows.div_ceil(8), 256, 0),
            &mut [
                Arg::In(&x),
                Arg::In(&gamma),
                Arg::In(&stats.mean),
                Arg::In(&stats.rstd),
                Arg::In(&g),
                Arg::I32(rows as i32),
                Arg::I32(d as i32),
                Arg::Out(&mut dx),
            ],
        )
        .unwrap();
        assert_close("dx", &shape, &dx, grads.dx.as_ref().unwrap(), 1e-4, 1e-5);
        for split in [rows, 16, 1] {
            let (dgamma, dbeta) = emu_params(&spec, &x, &stats.mean, &stats.rstd, &g, split);
            let what = format!("rows_per_split {split}");
            let want_g = grads.dgamma.as_ref().unwrap();
            let want_b = grads.dbeta.as_ref().unwrap();
            assert_close(
                &format!("dgamma ({what})"),
                &shape,
                &dgamma,
                want_g,
                1e-5,
                5e-5,
            );
            assert_close(
                &format!("dbeta ({what})"),
                &shape,
                &dbeta,
                want_b,
                1e-5,
                5e-5,
            );
        }
    }
}
