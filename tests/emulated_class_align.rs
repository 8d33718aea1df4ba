//! The class-alignment CUDA kernels (kernels/class_align.cu, sum_scale in
//! reduce.cu) under host emulation, against the CPU backend's
//! `ClassAlignKernels` on random awkward shapes, with and without W and the
//! confusion accumulation.
//!
//! Tolerances: loss and lse rtol 1e-5 / atol 1e-5; confusion rtol 1e-5 /
//! atol 1e-6; dz rtol 1e-4 / atol 1e-6.

mod emu_common;

use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::ops::class_align::kernels::{ClassAlignKernels, ClassAlignSpec};
use diccae_engine::rng::uniform_vec;
use emu_common::{Arg, assert_close, dims, launch, rng, unit_rows};
use rand::Rng;

struct Out {
    loss: f32,
    lse: Vec<f32>,
    confusion: Vec<f32>,
    status: [i32; 2],
}

fn emu_fwd(
    s: &ClassAlignSpec,
    z: &[f32],
    mu: &[f32],
    y: &[f32],
    w: Option<&[f32]>,
    conf: Vec<f32>,
) -> Out {
    let (n, k, d) = (s.n, s.k, s.d);
    let mut row_loss = vec![f32::NAN; n];
    let mut lse = vec![f32::NAN; n];
    let mut confusion = conf;
    let mut status = vec![0i32; 2];
    let has_conf = !confusion.is_empty();
    launch(
        "class_align_fwd_f32",
        dims(n.div_ceil(4), 128, 4 * k * 4),
        &mut [
            Arg::In(z),
            Arg::In(mu),
            Arg::In(y),
            Arg::In(w.unwrap_or(&[])),
            Arg::I32(i32::from(w.is_some())),
            Arg::I32(n as i32),
            Arg::I32(k as i32),
            Arg::I32(d as i32),
            Arg::F32(s.inv_tau),
            Arg::I32(i32::from(has_conf)),
            Arg::Out(&mut row_loss),
            Arg::Out(&mut lse),
            Arg::Out(&mut confusion),
            Arg::OutI32(&mut status),
        ],
    )
    .unwrap();
    let mut loss = vec![0.0f32];
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
    Out {
        loss: loss[0],
        lse,
        confusion,
        status: [status[0], status[1]],
    }
}

#[allow(clippy::too_many_arguments)]
fn emu_bwd(
    s: &ClassAlignSpec,
    z: &[f32],
    mu: &[f32],
    y: &[f32],
    w: Option<&[f32]>,
    lse: &[f32],
    g: f32,
    dz: &mut [f32],
) -> [i32; 2] {
    let (n, k, d) = (s.n, s.k, s.d);
    let mut status = vec![0i32; 2];
    launch(
        "class_align_bwd_f32",
        dims(n.div_ceil(4), 128, 4 * k * 4),
        &mut [
            Arg::In(z),
            Arg::In(mu),
            Arg::In(y),
            Arg::In(w.unwrap_or(&[])),
            Arg::I32(i32::from(w.is_some())),
            Arg::In(lse),
            Arg::In(&[g]),
            Arg::I32(n as i32),
            Arg::I32(k as i32),
            Arg::I32(d as i32),
            Arg::F32(s.inv_tau),
            Arg::Out(dz),
            Arg::OutI32(&mut status),
        ],
    )
    .unwrap();
    [status[0], status[1]]
}

#[test]
fn class_align_forward_backward_and_confusion_match_the_cpu_backend() {
    let mut r = rng("class_align_emulated");
    let cpu = CpuBackend::new();
    for &(n, k, d, weighted) in &[
        (1usize, 1usize, 5usize, false),
        (33, 7, 45, true),
        (70, 37, 16, true),
        (13, 70, 33, false),
    ] {
        let shape = format!("n={n} k={k} d={d} weighted={weighted}");
        let s = ClassAlignSpec {
            n,
            k,
            d,
            inv_tau: 1.0 / 0.1,
        };
        let z = unit_rows(&mut r, n, d);
        let mu = unit_rows(&mut r, k, d);
        let y: Vec<f32> = (0..n).map(|_| r.random_range(0..k) as f32).collect();
        let w = weighted.then(|| uniform_vec(&mut r, k * k, 0.2, 2.0));
        let conf0 = uniform_vec(&mut r, k * k, 0.0, 1.0);
        let out = emu_fwd(&s, &z, &mu, &y, w.as_deref(), conf0.clone());
        assert_eq!(out.status, [0, 0], "{shape}: no bad labels or weights");
        let mut loss = vec![0.0f32];
        let mut lse = vec![0.0f32; n];
        let mut conf = conf0;
        cpu.class_align_fwd(
            &s,
            &z,
            &mu,
            &y,
            w.as_ref(),
            &mut loss,
            &mut lse,
            Some(&mut conf),
        )
        .unwrap();
        assert_close("loss", &shape, &[out.loss], &loss, 1e-5, 1e-5);
        assert_close("lse", &shape, &out.lse, &lse, 1e-5, 1e-5);
        assert_close("confusion", &shape, &out.confusion, &conf, 1e-5, 1e-6);

        let g = 1.3f32;
        let start = unit_rows(&mut r, n, d);
        let mut dz = start.clone();
        assert_eq!(
            emu_bwd(&s, &z, &mu, &y, w.as_deref(), &out.lse, g, &mut dz),
            [0, 0]
        );
        let mut cdz = start;
        cpu.class_align_bwd(&s, &z, &mu, &y, w.as_ref(), &lse, &vec![g], &mut cdz)
            .unwrap();
        assert_close("dz", &shape, &dz, &cdz, 1e-4, 1e-6);
    }
}

#[test]
fn class_align_flags_bad_labels_and_weights() {
    let mut r = rng("class_align_emulated_bad");
    let (n, k, d) = (9, 3, 4);
    let s = ClassAlignSpec {
        n,
        k,
        d,
        inv_tau: 2.0,
    };
    let z = unit_rows(&mut r, n, d);
    let mu = unit_rows(&mut r, k, d);
    let mut y = vec![1.0f32; n];
    y[6] = 3.0;
    y[8] = 7.0;
    let mut w = vec![1.0f32; k * k];
    w[3 + 2] = -1.0; // W[1,2]
    w[3 * 2 + 1] = f32::NAN; // W[2,1]
    let out = emu_fwd(&s, &z, &mu, &y, Some(&w), Vec::new());
    assert_eq!(
        out.status,
        [i32::MAX - 6, i32::MAX - 5],
        "status = INT_MAX − [first bad row, first bad weight index]"
    );
}
