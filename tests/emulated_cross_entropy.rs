//! The cross-entropy CUDA kernels (kernels/cross_entropy.cu, and
//! sum_scale_f32 of kernels/reduce.cu for the mean) under host emulation,
//! against the CPU backend's `CrossEntropyKernels` on random awkward shapes
//! (one class, class counts not multiples of 32, one row), plus a target
//! outside 0..C, which both backends report.
//!
//! Tolerances: loss and LSE rtol 1e-5 / atol 1e-5 (`expf`/`logf` vs the
//! CPU's polynomial exp and f64 mean); dlogits (accumulated into non-zero
//! values) rtol 1e-4 / atol 1e-6.

mod emu_common;

use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::ops::cross_entropy::kernels::{CrossEntropyKernels, CrossEntropySpec};
use diccae_engine::rng::normal_vec;
use emu_common::{Arg, assert_close, dims, launch, rng};
use rand::Rng;

/// (loss, lse, status) on the emulator.
fn emu_fwd(s: &CrossEntropySpec, logits: &[f32], targets: &[f32]) -> (f32, Vec<f32>, i32) {
    let n = s.rows;
    let mut row_loss = vec![f32::NAN; n];
    let mut lse = vec![f32::NAN; n];
    let mut status = vec![0i32; 1];
    launch(
        "cross_entropy_fwd_f32",
        dims(n.div_ceil(8), 256, 0),
        &mut [
            Arg::In(logits),
            Arg::In(targets),
            Arg::I32(n as i32),
            Arg::I32(s.classes as i32),
            Arg::F32(s.scale),
            Arg::Out(&mut row_loss),
            Arg::Out(&mut lse),
            Arg::OutI32(&mut status),
        ],
    )
    .unwrap();
    let mut loss = vec![f32::NAN; 1];
    launch(
        "sum_scale_f32",
        dims(1, 256, 0),
        &mut [
            Arg::In(&row_loss),
            Arg::I32(n as i32),
            Arg::F32(1.0 / n as f32),
            Arg::Out(&mut loss),
        ],
    )
    .unwrap();
    (loss[0], lse, status[0])
}

/// Adds the backward into `dlogits`; returns the status.
fn emu_bwd(
    s: &CrossEntropySpec,
    logits: &[f32],
    targets: &[f32],
    lse: &[f32],
    g: f32,
    dlogits: &mut [f32],
) -> i32 {
    let mut status = vec![0i32; 1];
    launch(
        "cross_entropy_bwd_f32",
        dims(s.rows.div_ceil(8), 256, 0),
        &mut [
            Arg::In(logits),
            Arg::In(targets),
            Arg::In(lse),
            Arg::In(&[g]),
            Arg::I32(s.rows as i32),
            Arg::I32(s.classes as i32),
            Arg::F32(s.scale),
            Arg::Out(dlogits),
            Arg::OutI32(&mut status),
        ],
    )
    .unwrap();
    status[0]
}

#[test]
fn cross_entropy_forward_and_backward_match_the_cpu_backend() {
    let mut r = rng("cross_entropy_emulated");
    let cpu = CpuBackend::new();
    for &(rows, classes, scale) in &[
        (1usize, 1usize, 1.0f32),
        (7, 5, 5.0),
        (33, 257, 0.3),
        (129, 33, 2.0),
    ] {
        let shape = format!("rows={rows} classes={classes} scale={scale}");
        let spec = CrossEntropySpec {
            rows,
            classes,
            scale,
        };
        let logits = normal_vec(&mut r, rows * classes, 2.0);
        let targets: Vec<f32> = (0..rows)
            .map(|_| r.random_range(0..classes) as f32)
            .collect();
        let (loss, lse, status) = emu_fwd(&spec, &logits, &targets);
        assert_eq!(status, 0, "{shape}");
        let (closs, clse) = cpu.cross_entropy_fwd(&spec, &logits, &targets).unwrap();
        assert_close("loss", &shape, &[loss], &closs, 1e-5, 1e-5);
        assert_close("LSE", &shape, &lse, &clse, 1e-5, 1e-5);

        let g = 0.8f32;
        let start = normal_vec(&mut r, rows * classes, 1.0);
        let mut dl = start.clone();
        assert_eq!(emu_bwd(&spec, &logits, &targets, &clse, g, &mut dl), 0);
        let mut cdl = start;
        cpu.cross_entropy_bwd(&spec, &logits, &targets, &clse, &vec![g], &mut cdl)
            .unwrap();
        assert_close("dlogits", &shape, &dl, &cdl, 1e-4, 1e-6);
    }
}

#[test]
fn a_target_outside_the_classes_is_reported_by_both_backends() {
    let cpu = CpuBackend::new();
    let spec = CrossEntropySpec {
        rows: 3,
        classes: 4,
        scale: 1.0,
    };
    let logits = vec![0.5f32; 12];
    for bad in [4.0f32, -1.0, 1.5, f32::NAN] {
        let targets = vec![0.0, bad, 3.0];
        assert!(cpu.cross_entropy_fwd(&spec, &logits, &targets).is_err());
        let (_, _, status) = emu_fwd(&spec, &logits, &targets);
        assert_eq!(
            status,
            i32::MAX - 1,
            "target {bad}: status names row 1 (as INT_MAX − row)"
        );
        let lse = vec![0.0f32; 3];
        let mut dl = vec![0.0f32; 12];
        assert_eq!(
            emu_bwd(&spec, &logits, &targets, &lse, 1.0, &mut dl),
            i32::MAX - 1
        );
        assert!(dl[4..8].iter().all(|&v| v == 0.0), "the bad row is skipped");
    }
}
