//! The AdamW CUDA kernel (kernels/adamw.cu) under host emulation, against
//! the CPU backend's `OptimKernels::adamw_update` over three consecutive
//! steps, on awkward lengths and a deliberately small grid (so the
//! grid-stride loop takes several steps).
//!
//! Tolerances: param, m and v rtol 1e-6 / atol 1e-7 (the same f32
//! expression; a GPU build may contract it into FMAs, an ulp or so apart).

mod emu_common;

use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::ops::adamw::kernels::{AdamWStep, OptimKernels};
use diccae_engine::rng::normal_vec;
use emu_common::{Arg, assert_close, dims, launch, rng};

#[test]
fn adamw_update_matches_the_cpu_backend() {
    let mut r = rng("adamw_emulated");
    let cpu = CpuBackend::new();
    for &(n, wd) in &[(1usize, 0.0f32), (7, 0.05), (33, 0.1), (1000, 0.01)] {
        let shape = format!("n={n} weight_decay={wd}");
        let p0 = normal_vec(&mut r, n, 1.0);
        let (mut p, mut m, mut v) = (p0.clone(), vec![0.0f32; n], vec![0.0f32; n]);
        let (mut cp, mut cm, mut cv) = (p0, vec![0.0f32; n], vec![0.0f32; n]);
        let (beta1, beta2) = (0.9f32, 0.999f32);
        for t in 1..=3 {
            let grad = normal_vec(&mut r, n, 0.5);
            let step = AdamWStep {
                lr: 1e-3 * t as f32,
                beta1,
                beta2,
                eps: 1e-8,
                weight_decay: wd,
                bias_correction1: 1.0 - beta1.powi(t),
                bias_correction2: 1.0 - beta2.powi(t),
            };
            launch(
                "adamw_update_f32",
                dims(n.div_ceil(256).clamp(1, 2), 256, 0),
                &mut [
                    Arg::Out(&mut p),
                    Arg::In(&grad),
                    Arg::Out(&mut m),
                    Arg::Out(&mut v),
                    Arg::I32(n as i32),
                    Arg::F32(step.lr),
                    Arg::F32(step.beta1),
                    Arg::F32(step.beta2),
                    Arg::F32(step.eps),
                    Arg::F32(step.weight_decay),
                    Arg::F32(step.bias_correction1),
                    Arg::F32(step.bias_correction2),
                ],
            )
            .unwrap();
            cpu.adamw_update(&step, &mut cp, &grad, &mut cm, &mut cv)
                .unwrap();
            let at = format!("{shape} step {t}");
            assert_close("param", &at, &p, &cp, 1e-6, 1e-7);
            assert_close("m", &at, &m, &cm, 1e-6, 1e-7);
            assert_close("v", &at, &v, &cv, 1e-6, 1e-7);
        }
    }
}
