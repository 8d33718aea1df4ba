//! The token-layout CUDA kernels (kernels/tokens.cu) under host emulation,
//! against the CPU backend's `TokenKernels` on random awkward shapes, on a
//! deliberately small grid so the grid-stride loops take several steps.
//!
//! Tolerances: all exact. mean_tokens sums in f64 in token order and scales
//! by 1/tokens in f64 like the CPU; the backward, the copies and the
//! (un)patchify scatter do one rounding per element, as on the CPU.

mod emu_common;

use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::ops::tokens::kernels::{PatchSpec, TokenBlock, TokenKernels};
use diccae_engine::rng::normal_vec;
use emu_common::{Arg, Dims, assert_close, dims, launch, rng};

/// A grid-stride launch over `n` elements with at most 3 blocks.
fn flat(n: usize) -> Dims {
    dims(n.div_ceil(256).clamp(1, 3), 256, 0)
}

#[test]
fn mean_tokens_forward_and_backward_match_the_cpu_backend() {
    let mut r = rng("mean_tokens_emulated");
    let cpu = CpuBackend::new();
    for &(b, t, w) in &[
        (1usize, 1usize, 1usize),
        (3, 7, 5),
        (2, 33, 257),
        (5, 129, 3),
    ] {
        let shape = format!("batch={b} tokens={t} width={w}");
        let x = normal_vec(&mut r, b * t * w, 1.0);
        let mut out = vec![f32::NAN; b * w];
        let (bi, ti, wi) = (b as i32, t as i32, w as i32);
        launch(
            "mean_tokens_f32",
            flat(b * w),
            &mut [
                Arg::In(&x),
                Arg::I32(bi),
                Arg::I32(ti),
                Arg::I32(wi),
                Arg::Out(&mut out),
            ],
        )
        .unwrap();
        let mut want = vec![f32::NAN; b * w];
        cpu.mean_tokens(b, t, w, &x, &mut want).unwrap();
        assert_close("mean_tokens", &shape, &out, &want, 0.0, 0.0);

        let g = normal_vec(&mut r, b * w, 1.0);
        let start = normal_vec(&mut r, b * t * w, 1.0);
        let mut gx = start.clone();
        launch(
            "mean_tokens_bwd_f32",
            flat(b * t * w),
            &mut [
                Arg::In(&g),
                Arg::I32(bi),
                Arg::I32(ti),
                Arg::I32(wi),
                Arg::Out(&mut gx),
            ],
        )
        .unwrap();
        let mut want = start;
        cpu.mean_tokens_backward(b, t, w, &g, &mut want).unwrap();
        assert_close("mean_tokens_backward", &shape, &gx, &want, 0.0, 0.0);
    }
}

#[test]
fn copy_tokens_matches_the_cpu_backend() {
    let mut r = rng("copy_tokens_emulated");
    let cpu = CpuBackend::new();
    let blocks = [
        (1usize, 1usize, 1usize, 0usize, 1usize, 0usize, 1usize),
        (3, 5, 7, 2, 9, 4, 5),
        (2, 257, 33, 0, 40, 7, 33),
        (4, 33, 129, 100, 29, 0, 29),
    ];
    for &(batch, width, src_tokens, src_start, dst_tokens, dst_start, len) in &blocks {
        let block = TokenBlock {
            batch,
            width,
            src_tokens,
            src_start,
            dst_tokens,
            dst_start,
            len,
        };
        let shape = format!("{block:?}");
        let (ns, nd) = block.required_lengths();
        let src = normal_vec(&mut r, ns, 1.0);
        let start = normal_vec(&mut r, nd, 1.0);
        for accumulate in [false, true] {
            let mut dst = start.clone();
            launch(
                "copy_tokens_f32",
                flat(batch * len * width),
                &mut [
                    Arg::In(&src),
                    Arg::I32(batch as i32),
                    Arg::I32(width as i32),
                    Arg::I32(src_tokens as i32),
                    Arg::I32(src_start as i32),
                    Arg::I32(dst_tokens as i32),
                    Arg::I32(dst_start as i32),
                    Arg::I32(len as i32),
                    Arg::I32(i32::from(accumulate)),
                    Arg::Out(&mut dst),
                ],
            )
            .unwrap();
            let mut want = start.clone();
            cpu.copy_tokens(&block, accumulate, &src, &mut want)
                .unwrap();
            let what = format!("copy_tokens (accumulate {accumulate})");
            assert_close(&what, &shape, &dst, &want, 0.0, 0.0);
        }
    }
}

/// The kernels' integer parameters of a patch spec, in order.
fn spec_args(s: &PatchSpec) -> [i32; 7] {
    [
        s.batch, s.frames, s.channels, s.height, s.width, s.tubelet, s.patch,
    ]
    .map(|v| v as i32)
}

#[test]
fn patchify_and_unpatchify_add_match_the_cpu_backend() {
    let mut r = rng("patchify_emulated");
    let cpu = CpuBackend::new();
    let specs = [
        (1usize, 1usize, 1usize, 1usize, 1usize, 1usize, 1usize),
        (2, 4, 3, 10, 15, 2, 5),
        (1, 1, 1, 6, 33, 1, 3),
        (3, 3, 1, 7, 7, 3, 7),
    ];
    for &(batch, frames, channels, height, width, tubelet, patch) in &specs {
        let spec = PatchSpec {
            batch,
            frames,
            channels,
            height,
            width,
            tubelet,
            patch,
        };
        spec.validate("test").unwrap();
        let shape = format!("{spec:?}");
        let n = spec.numel();
        let x = normal_vec(&mut r, n, 1.0);
        let mut args: Vec<Arg> = vec![Arg::In(&x)];
        args.extend(spec_args(&spec).map(Arg::I32));
        let mut out = vec![f32::NAN; n];
        args.push(Arg::Out(&mut out));
        launch("patchify_f32", flat(n), &mut args).unwrap();
        let mut want = vec![f32::NAN; n];
        cpu.patchify(&spec, &x, &mut want).unwrap();
        assert_close("patchify", &shape, &out, &want, 0.0, 0.0);

        let patches = normal_vec(&mut r, n, 1.0);
        let start = normal_vec(&mut r, n, 1.0);
        let mut got = start.clone();
        let mut args: Vec<Arg> = vec![Arg::In(&patches)];
        args.extend(spec_args(&spec).map(Arg::I32));
        args.push(Arg::Out(&mut got));
        launch("unpatchify_add_f32", flat(n), &mut args).unwrap();
        let mut want = start;
        cpu.unpatchify_add(&spec, &patches, &mut want).unwrap();
        assert_close("unpatchify_add", &shape, &got, &want, 0.0, 0.0);
    }
}
