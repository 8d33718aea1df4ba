//! The softmax CUDA kernels (kernels/softmax.cu) under host emulation,
//! against the CPU backend's `SoftmaxKernels` on random awkward shapes
//! (one column, widths not multiples of 32, one row, rows spanning several
//! blocks).
//!
//! Tolerances: forward rtol 1e-5 / atol 1e-7 (`expf` vs the CPU's
//! polynomial exp, both within a few ulp, and row sums in another order);
//! backward (accumulated into a non-zero dx) rtol 1e-5 / atol 1e-6.

mod emu_common;

use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::ops::softmax::kernels::SoftmaxKernels;
use diccae_engine::rng::normal_vec;
use emu_common::{Arg, assert_close, dims, launch, rng};

#[test]
fn softmax_forward_and_backward_match_the_cpu_backend() {
    let mut r = rng("softmax_emulated");
    let cpu = CpuBackend::new();
    for &(rows, cols) in &[(1usize, 1usize), (7, 5), (33, 257), (129, 33), (2, 769)] {
        let shape = format!("rows={rows} cols={cols}");
        let n = rows * cols;
        let x = normal_vec(&mut r, n, 3.0);
        let mut y = vec![f32::NAN; n];
        launch(
            "softmax_fwd_f32",
            dims(rows.div_ceil(8), 256, 0),
            &mut [
                Arg::In(&x),
                Arg::I32(rows as i32),
                Arg::I32(cols as i32),
                Arg::Out(&mut y),
            ],
        )
        .unwrap();
        let mut want = vec![f32::NAN; n];
        cpu.softmax_fwd(rows, cols, &x, &mut want).unwrap();
        assert_close("softmax", &shape, &y, &want, 1e-5, 1e-7);

        let dy = normal_vec(&mut r, n, 1.0);
        let start = normal_vec(&mut r, n, 1.0);
        let mut dx = start.clone();
        launch(
            "softmax_bwd_f32",
            dims(rows.div_ceil(8), 256, 0),
            &mut [
                Arg::In(&want),
                Arg::In(&dy),
                Arg::I32(rows as i32),
                Arg::I32(cols as i32),
                Arg::Out(&mut dx),
            ],
        )
        .unwrap();
        let mut cdx = start;
        cpu.softmax_bwd(rows, cols, &want, &dy, &mut cdx).unwrap();
        assert_close("softmax backward", &shape, &dx, &cdx, 1e-5, 1e-6);
    }
}
