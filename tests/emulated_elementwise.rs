//! The elementwise CUDA kernels (kernels/elementwise.cu) under host
//! emulation, against the CPU backend's `ElementwiseKernels` on random
//! awkward shapes (widths not multiples of 32, a single row, a single
//! column). Flat kernels run on a deliberately small grid so that their
//! grid-stride loops take several steps.
//!
//! Tolerances: add, scaled and add_row exact (one rounding each, as on the
//! CPU); sum_rows rtol 1e-5 / atol 1e-5 (f32 sums in another order); GELU
//! forward rtol 1e-5 / atol 1e-6 (`tanhf` vs the CPU's rational tanh, ≤ 4e-7
//! apart); GELU backward rtol 1e-5 / atol 2e-5: for x ≲ −4.6 the CPU's tanh
//! saturates and its derivative is off by < 5e-6, times |grad_out| ≤ 4;
//! sigmoid forward rtol 1e-6 / atol 1e-7 (`expf` on both sides, one
//! division); sigmoid backward exact (the same two products).

mod emu_common;

use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::ops::elementwise::kernels::ElementwiseKernels;
use diccae_engine::rng::normal_vec;
use emu_common::{Arg, Dims, assert_close, dims, dims3, launch, rng};

/// A grid-stride launch over `n` elements with at most 3 blocks.
fn flat(n: usize) -> Dims {
    dims(n.div_ceil(256).clamp(1, 3), 256, 0)
}

/// Column sums on the emulator: one launch when `split ≥ rows`, otherwise
/// per-chunk partials and a second launch over them.
fn emu_sum_rows(x: &[f32], rows: usize, d: usize, split: usize) -> Vec<f32> {
    let chunks = rows.div_ceil(split);
    let mut part = vec![f32::NAN; chunks * d];
    launch(
        "sum_rows_f32",
        dims3([d.div_ceil(32), chunks, 1], 256, 0),
        &mut [
            Arg::In(x),
            Arg::I32(rows as i32),
            Arg::I32(d as i32),
            Arg::I32(split as i32),
            Arg::Out(&mut part),
        ],
    )
    .unwrap();
    if chunks == 1 {
        return part;
    }
    let mut out = vec![f32::NAN; d];
    launch(
        "sum_rows_f32",
        dims3([d.div_ceil(32), 1, 1], 256, 0),
        &mut [
            Arg::In(&part),
            Arg::I32(chunks as i32),
            Arg::I32(d as i32),
            Arg::I32(chunks as i32),
            Arg::Out(&mut out),
        ],
    )
    .unwrap();
    out
}

#[test]
fn elementwise_kernels_match_the_cpu_backend() {
    let mut r = rng("elementwise_emulated");
    let cpu = CpuBackend::new();
    for &(rows, d) in &[(1usize, 1usize), (7, 5), (33, 257), (129, 33), (3, 769)] {
        let shape = format!("rows={rows} d={d}");
        let n = rows * d;
        let (ni, ri, di) = (n as i32, rows as i32, d as i32);
        let a = normal_vec(&mut r, n, 3.0);
        let b = normal_vec(&mut r, n, 1.0);
        let row = normal_vec(&mut r, d, 1.0);

        let mut out = vec![f32::NAN; n];
        launch(
            "add_f32",
            flat(n),
            &mut [Arg::In(&a), Arg::In(&b), Arg::I32(ni), Arg::Out(&mut out)],
        )
        .unwrap();
        assert_close("add", &shape, &out, &cpu.add(&a, &b).unwrap(), 0.0, 0.0);

        let c = -0.37f32;
        launch(
            "scaled_f32",
            flat(n),
            &mut [Arg::In(&a), Arg::I32(ni), Arg::F32(c), Arg::Out(&mut out)],
        )
        .unwrap();
        assert_close(
            "scaled",
            &shape,
            &out,
            &cpu.scaled(&a, c).unwrap(),
            0.0,
            0.0,
        );

        launch(
            "add_row_f32",
            flat(n),
            &mut [
                Arg::In(&a),
                Arg::In(&row),
                Arg::I32(ri),
                Arg::I32(di),
                Arg::Out(&mut out),
            ],
        )
        .unwrap();
        let want = cpu.add_row(&a, &row, rows, d).unwrap();
        assert_close("add_row", &shape, &out, &want, 0.0, 0.0);

        let want = cpu.sum_rows(&b, rows, d).unwrap();
        for split in [rows, 16, 1] {
            let got = emu_sum_rows(&b, rows, d, split);
            let what = format!("sum_rows (rows_per_split {split})");
            assert_close(&what, &shape, &got, &want, 1e-5, 1e-5);
        }

        launch(
            "gelu_fwd_f32",
            flat(n),
            &mut [Arg::In(&a), Arg::I32(ni), Arg::Out(&mut out)],
        )
        .unwrap();
        assert_close(
            "gelu_fwd",
            &shape,
            &out,
            &cpu.gelu_fwd(&a).unwrap(),
            1e-5,
            1e-6,
        );

        launch(
            "gelu_bwd_f32",
            flat(n),
            &mut [Arg::In(&a), Arg::In(&b), Arg::I32(ni), Arg::Out(&mut out)],
        )
        .unwrap();
        let want = cpu.gelu_bwd(&a, &b).unwrap();
        assert_close("gelu_bwd", &shape, &out, &want, 1e-5, 2e-5);

        launch(
            "sigmoid_fwd_f32",
            flat(n),
            &mut [Arg::In(&a), Arg::I32(ni), Arg::Out(&mut out)],
        )
        .unwrap();
        let y = cpu.sigmoid_fwd(&a).unwrap();
        assert_close("sigmoid_fwd", &shape, &out, &y, 1e-6, 1e-7);

        launch(
            "sigmoid_bwd_f32",
            flat(n),
            &mut [Arg::In(&y), Arg::In(&b), Arg::I32(ni), Arg::Out(&mut out)],
        )
        .unwrap();
        let want = cpu.sigmoid_bwd(&y, &b).unwrap();
        assert_close("sigmoid_bwd", &shape, &out, &want, 0.0, 0.0);
    }
}
