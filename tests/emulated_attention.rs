//! The fused attention CUDA kernels (kernels/attention.cu) under host
//! emulation, against the CPU backend's `AttentionKernels` on random awkward
//! shapes (sequence lengths that leave partial 8-query and 32-key tiles,
//! head dims that are not multiples of 32).
//!
//! Tolerances: out and lse rtol 1e-5 / atol 1e-5; grad_qkv rtol 1e-4 /
//! atol 1e-5 (recomputed probabilities, sums in another order).

mod emu_common;

use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::ops::attention::kernels::{AttentionKernels, AttentionSpec};
use diccae_engine::rng::normal_vec;
use emu_common::{Arg, assert_close, dims, dims3, launch, rng};

fn grid(s: &AttentionSpec) -> [usize; 3] {
    [s.seq.div_ceil(8), s.heads, s.batch]
}

fn emu_fwd(s: &AttentionSpec, qkv: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let dh = s.head_dim;
    let mut out = vec![f32::NAN; s.out_len()];
    let mut lse = vec![f32::NAN; s.lse_len()];
    launch(
        "attention_fwd_f32",
        dims3(grid(s), 256, (8 * dh + 32 * (dh + 1) + 32 * dh) * 4),
        &mut [
            Arg::In(qkv),
            Arg::I32(s.seq as i32),
            Arg::I32(s.heads as i32),
            Arg::I32(dh as i32),
            Arg::F32(s.scale()),
            Arg::Out(&mut out),
            Arg::Out(&mut lse),
        ],
    )
    .unwrap();
    (out, lse)
}

fn emu_bwd(
    s: &AttentionSpec,
    qkv: &[f32],
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
    dqkv: &mut [f32],
) {
    let dh = s.head_dim;
    let (sq, h, d) = (s.seq as i32, s.heads as i32, dh as i32);
    let mut delta = vec![f32::NAN; s.lse_len()];
    launch(
        "attention_bwd_dot_f32",
        dims((s.batch * s.seq * s.heads).div_ceil(8), 256, 0),
        &mut [
            Arg::In(out),
            Arg::In(dout),
            Arg::I32(s.batch as i32),
            Arg::I32(sq),
            Arg::I32(h),
            Arg::I32(d),
            Arg::Out(&mut delta),
        ],
    )
    .unwrap();
    for (name, shared) in [
        ("attention_bwd_dq_f32", (2 * 8 * dh + 2 * 32 * (dh + 1)) * 4),
        (
            "attention_bwd_dkdv_f32",
            (2 * 8 * dh + 2 * 32 * (dh + 1) + 64) * 4,
        ),
    ] {
        launch(
            name,
            dims3(grid(s), 256, shared),
            &mut [
                Arg::In(qkv),
                Arg::In(dout),
                Arg::In(lse),
                Arg::In(&delta),
                Arg::I32(sq),
                Arg::I32(h),
                Arg::I32(d),
                Arg::F32(s.scale()),
                Arg::Out(dqkv),
            ],
        )
        .unwrap();
    }
}

#[test]
fn attention_forward_and_backward_match_the_cpu_backend() {
    let mut r = rng("attention_emulated");
    let cpu = CpuBackend::new();
    for &(batch, seq, heads, head_dim) in &[
        (1usize, 1usize, 1usize, 5usize),
        (2, 13, 3, 16),
        (1, 37, 2, 33),
        (2, 70, 1, 8),
    ] {
        let s = AttentionSpec {
            batch,
            seq,
            heads,
            head_dim,
        };
        let shape = format!("{s:?}");
        let qkv = normal_vec(&mut r, s.qkv_len(), 1.0);
        let (out, lse) = emu_fwd(&s, &qkv);
        let mut cout = vec![0.0f32; s.out_len()];
        let mut clse = vec![0.0f32; s.lse_len()];
        cpu.attention_fwd(&s, &qkv, &mut cout, &mut clse).unwrap();
        assert_close("out", &shape, &out, &cout, 1e-5, 1e-5);
        assert_close("lse", &shape, &lse, &clse, 1e-5, 1e-5);

        let dout = normal_vec(&mut r, s.out_len(), 1.0);
        let start = normal_vec(&mut r, s.qkv_len(), 1.0);
        let mut dqkv = start.clone();
        emu_bwd(&s, &qkv, &out, &lse, &dout, &mut dqkv);
        let mut cdqkv = start;
        cpu.attention_bwd(&s, &qkv, &cout, &clse, &dout, &mut cdqkv)
            .unwrap();
        assert_close("grad_qkv", &shape, &dqkv, &cdqkv, 1e-4, 1e-5);
    }
}
