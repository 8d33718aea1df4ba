//! Token-layout ops: forwards against plain index arithmetic, gradients
//! against finite differences, patchify round trips and shape errors.

use diccae_engine::autograd::{ParamStore, Tape, Var};
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::gradcheck::{GradCheck, all_close, check_gradients, test_seed};
use diccae_engine::ops::tokens::kernels::{PatchSpec, TokenKernels};
use diccae_engine::ops::tokens::{
    concat_tokens, mean_pool, narrow_tokens, patchify_spectrogram, patchify_video, reshape,
    split_tokens,
};
use diccae_engine::rng::{SeededRng, normal_vec, seeded};
use diccae_engine::tensor::Tensor;

const BATCHES: [usize; 2] = [1, 3];
const TOKENS: [usize; 3] = [1, 7, 33];
const WIDTHS: [usize; 3] = [1, 5, 33];

/// Every `(B, T, d)` of the awkward sizes.
fn token_sizes() -> impl Iterator<Item = (usize, usize, usize)> {
    BATCHES.into_iter().flat_map(|b| {
        TOKENS
            .into_iter()
            .flat_map(move |t| WIDTHS.into_iter().map(move |d| (b, t, d)))
    })
}

/// Runs `f` on constants built from `inputs` and returns its output.
fn forward<F>(inputs: &[(Vec<usize>, Vec<f32>)], f: F) -> (Vec<usize>, Vec<f32>)
where
    F: Fn(&mut Tape<'_, CpuBackend>, &[Var]) -> diccae_engine::Result<Var>,
{
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    let mut tape = Tape::no_grad(&store);
    let vars: Vec<Var> = inputs
        .iter()
        .map(|(s, d)| tape.constant(Tensor::from_host(&be, s, d).unwrap()))
        .collect();
    let out = f(&mut tape, &vars).unwrap();
    (
        tape.shape(out).to_vec(),
        tape.value(out).to_host(&be).unwrap(),
    )
}

/// The error message of `f` applied to zero tensors of `shapes`.
fn error_of<F>(shapes: &[&[usize]], f: F) -> String
where
    F: Fn(&mut Tape<'_, CpuBackend>, &[Var]) -> diccae_engine::Result<Var>,
{
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    let mut tape = Tape::new(&store);
    let vars: Vec<Var> = shapes
        .iter()
        .map(|s| tape.leaf(Tensor::zeros(&be, s).unwrap()))
        .collect();
    match f(&mut tape, &vars) {
        Ok(v) => panic!("expected an error, got shape {:?}", tape.shape(v)),
        Err(e) => e.to_string(),
    }
}

fn random(rng: &mut SeededRng, shape: &[usize]) -> (Vec<usize>, Vec<f32>) {
    (shape.to_vec(), normal_vec(rng, shape.iter().product(), 1.0))
}

/// Mean over tokens by definition, in f64.
fn mean_ref(x: &[f32], b: usize, t: usize, d: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; b * d];
    for bi in 0..b {
        for j in 0..d {
            let s: f64 = (0..t).map(|ti| f64::from(x[(bi * t + ti) * d + j])).sum();
            out[bi * d + j] = (s / t as f64) as f32;
        }
    }
    out
}

#[test]
fn mean_pool_matches_definition() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    // The extra sizes span the parallel path and several column blocks.
    let extra = [(3, 129, 129), (1, 33, 1000), (1, 7, 2100), (2, 9, 2100)];
    for (b, t, d) in token_sizes().chain(extra) {
        let x = random(&mut rng, &[b, t, d]);
        let (shape, got) = forward(std::slice::from_ref(&x), |tp, v| mean_pool(tp, v[0]));
        assert_eq!(shape, vec![b, d]);
        // Both sides accumulate in f64: only the final rounding can differ.
        all_close(&got, &mean_ref(&x.1, b, t, d), 1e-6, 1e-7)
            .unwrap_or_else(|e| panic!("seed {seed} [{b}, {t}, {d}]: {e}"));
    }
}

#[test]
fn mean_pool_gradients() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for (b, t, d) in token_sizes() {
        let x = random(&mut rng, &[b, t, d]);
        check_gradients(
            &format!("mean_pool [{b}, {t}, {d}]"),
            seed,
            &[x],
            &GradCheck::default(),
            |tp, v| mean_pool(tp, v[0]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn mean_pool_backward_broadcasts_large() {
    // A size above the parallel threshold: dL/dx[b, t, :] = g[b, :] / T.
    let seed = test_seed();
    let mut rng = seeded(seed);
    let (b, t, d) = (3, 129, 129);
    let be = CpuBackend::new();
    let g = normal_vec(&mut rng, b * d, 1.0);
    let mut gx = vec![0.5f32; b * t * d];
    be.mean_tokens_backward(b, t, d, &g, &mut gx).unwrap();
    let want: Vec<f32> = (0..b * t * d)
        .map(|i| 0.5 + g[(i / (t * d)) * d + i % d] / t as f32)
        .collect();
    all_close(&gx, &want, 1e-6, 1e-7).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
}

/// `[B, ΣT_i, d]` by index arithmetic.
fn concat_ref(parts: &[(Vec<usize>, Vec<f32>)]) -> Vec<f32> {
    let b = parts[0].0[0];
    let d = parts[0].0[2];
    let mut out = Vec::new();
    for bi in 0..b {
        for (shape, data) in parts {
            let t = shape[1];
            for ti in 0..t {
                for j in 0..d {
                    out.push(data[(bi * t + ti) * d + j]);
                }
            }
        }
    }
    out
}

#[test]
fn concat_and_narrow_match_index_arithmetic() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for &b in &BATCHES {
        for &d in &WIDTHS.iter().copied().chain([1000]).collect::<Vec<_>>() {
            let parts: Vec<_> = [7, 1, 33]
                .iter()
                .map(|&t| random(&mut rng, &[b, t, d]))
                .collect();
            let (shape, got) = forward(&parts, concat_tokens);
            assert_eq!(shape, vec![b, 41, d]);
            assert_eq!(got, concat_ref(&parts), "seed {seed} concat b{b} d{d}");

            let x = random(&mut rng, &[b, 33, d]);
            for (start, len) in [(0, 33), (0, 1), (5, 7), (32, 1), (1, 32)] {
                let (shape, got) = forward(std::slice::from_ref(&x), |tp, v| {
                    narrow_tokens(tp, v[0], start, len)
                });
                assert_eq!(shape, vec![b, len, d]);
                let mut want = Vec::new();
                for bi in 0..b {
                    for ti in start..start + len {
                        want.extend_from_slice(&x.1[(bi * 33 + ti) * d..][..d]);
                    }
                }
                assert_eq!(got, want, "seed {seed} narrow b{b} d{d} {start}+{len}");
            }
        }
    }
}

#[test]
fn split_then_concat_is_identity() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for (b, t, d) in token_sizes().filter(|s| s.1 > 1) {
        let x = random(&mut rng, &[b, t, d]);
        for at in [1, t / 2, t - 1] {
            let (_, got) = forward(std::slice::from_ref(&x), |tp, v| {
                let (head, tail) = split_tokens(tp, v[0], at)?;
                assert_eq!(tp.shape(head), &[b, at, d]);
                assert_eq!(tp.shape(tail), &[b, t - at, d]);
                concat_tokens(tp, &[head, tail])
            });
            assert_eq!(got, x.1, "seed {seed} [{b}, {t}, {d}] at {at}");
        }
    }
}

#[test]
fn concat_gradients() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for (b, t, d) in token_sizes() {
        let inputs = vec![
            random(&mut rng, &[b, t, d]),
            random(&mut rng, &[b, 7, d]),
            random(&mut rng, &[b, 1, d]),
        ];
        check_gradients(
            &format!("concat_tokens [{b}, {t}+7+1, {d}]"),
            seed,
            &inputs,
            &GradCheck::default(),
            concat_tokens,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    // The same input twice: both slices add into its gradient.
    let x = random(&mut rng, &[3, 7, 5]);
    check_gradients(
        "concat [x, x]",
        seed,
        &[x],
        &GradCheck::default(),
        |tp, v| concat_tokens(tp, &[v[0], v[0]]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn narrow_and_split_gradients() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for (b, t, d) in token_sizes() {
        let x = random(&mut rng, &[b, t, d]);
        let (start, len) = (t / 3, t - t / 3 - t / 4);
        check_gradients(
            &format!("narrow_tokens [{b}, {t}, {d}] {start}+{len}"),
            seed,
            std::slice::from_ref(&x),
            &GradCheck::default(),
            |tp, v| narrow_tokens(tp, v[0], start, len),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        if t > 1 {
            // Both halves, reordered, so each narrow's backward is exercised.
            check_gradients(
                &format!("split_tokens [{b}, {t}, {d}]"),
                seed,
                &[x],
                &GradCheck::default(),
                |tp, v| {
                    let (head, tail) = split_tokens(tp, v[0], t / 2)?;
                    concat_tokens(tp, &[tail, head])
                },
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    // Overlapping narrows of one input accumulate.
    let x = random(&mut rng, &[3, 33, 5]);
    check_gradients(
        "overlapping narrows",
        seed,
        &[x],
        &GradCheck::default(),
        |tp, v| {
            let a = narrow_tokens(tp, v[0], 2, 20)?;
            let b = narrow_tokens(tp, v[0], 10, 23)?;
            concat_tokens(tp, &[a, b])
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn reshape_keeps_data_and_passes_gradients() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for (b, t, d) in token_sizes() {
        let x = random(&mut rng, &[b, t, d]);
        let (shape, got) = forward(std::slice::from_ref(&x), |tp, v| {
            reshape(tp, v[0], &[b * t, d])
        });
        assert_eq!(shape, vec![b * t, d]);
        assert_eq!(got, x.1);
        check_gradients(
            &format!("reshape [{b}, {t}, {d}]"),
            seed,
            &[x],
            &GradCheck::default(),
            // Reshape then a token op on the new layout, then back.
            |tp, v| {
                let y = reshape(tp, v[0], &[1, b * t, d])?;
                let m = mean_pool(tp, y)?;
                reshape(tp, m, &[d])
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Spectrogram patches by index arithmetic.
fn spec_patches_ref(x: &[f32], b: usize, f: usize, t: usize, p: usize) -> Vec<f32> {
    let (gf, gt) = (f / p, t / p);
    let mut out = vec![f32::NAN; b * f * t];
    for bi in 0..b {
        for fi in 0..gf {
            for ti in 0..gt {
                let patch = bi * gf * gt + fi * gt + ti;
                for pi in 0..p {
                    for pj in 0..p {
                        out[patch * p * p + pi * p + pj] =
                            x[(bi * f + fi * p + pi) * t + ti * p + pj];
                    }
                }
            }
        }
    }
    out
}

/// Video tubelets by index arithmetic.
fn video_patches_ref(x: &[f32], dims: [usize; 5], tt: usize, p: usize) -> Vec<f32> {
    let [b, t, c, h, w] = dims;
    let (gt, gr, gc) = (t / tt, h / p, w / p);
    let plen = tt * c * p * p;
    let mut out = vec![f32::NAN; b * t * c * h * w];
    for bi in 0..b {
        for ti in 0..gt {
            for ri in 0..gr {
                for ci in 0..gc {
                    let patch = ((bi * gt + ti) * gr + ri) * gc + ci;
                    for ft in 0..tt {
                        for ch in 0..c {
                            for pi in 0..p {
                                for pj in 0..p {
                                    let o = ((ft * c + ch) * p + pi) * p + pj;
                                    let frame = ti * tt + ft;
                                    let i = (((bi * t + frame) * c + ch) * h + ri * p + pi) * w
                                        + ci * p
                                        + pj;
                                    out[patch * plen + o] = x[i];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// `(B, F, T, p)`: awkward grids, one above the parallel threshold.
const SPEC_SIZES: [(usize, usize, usize, usize); 6] = [
    (1, 1, 1, 1),
    (3, 7, 33, 1),
    (1, 21, 33, 3),
    (3, 10, 35, 5),
    (3, 4, 8, 4),
    (3, 64, 200, 4),
];

/// `([B, T, C, H, W], t, p)`: awkward clips, one above the parallel threshold.
const VIDEO_SIZES: [([usize; 5], usize, usize); 6] = [
    ([1, 1, 1, 1, 1], 1, 1),
    ([3, 2, 3, 6, 6], 2, 3),
    ([1, 3, 1, 5, 10], 1, 5),
    ([3, 4, 3, 14, 7], 2, 7),
    ([1, 6, 2, 4, 4], 3, 2),
    ([3, 4, 3, 32, 32], 2, 8),
];

#[test]
fn patchify_spectrogram_matches_index_arithmetic() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for (b, f, t, p) in SPEC_SIZES {
        let x = random(&mut rng, &[b, f, t]);
        let (shape, got) = forward(std::slice::from_ref(&x), |tp, v| {
            patchify_spectrogram(tp, v[0], p)
        });
        assert_eq!(shape, vec![b, (f / p) * (t / p), p * p]);
        assert_eq!(
            got,
            spec_patches_ref(&x.1, b, f, t, p),
            "seed {seed} [{b}, {f}, {t}] p{p}"
        );
    }
}

#[test]
fn patchify_video_matches_index_arithmetic() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for (dims, tt, p) in VIDEO_SIZES {
        let x = random(&mut rng, &dims);
        let (shape, got) = forward(std::slice::from_ref(&x), |tp, v| {
            patchify_video(tp, v[0], tt, p)
        });
        let [b, t, c, h, w] = dims;
        assert_eq!(shape, vec![b, (t / tt) * (h / p) * (w / p), tt * c * p * p]);
        assert_eq!(
            got,
            video_patches_ref(&x.1, dims, tt, p),
            "seed {seed} {dims:?} t{tt} p{p}"
        );
    }
}

/// The backward of `op` seeded with its own output: a permutation's
/// transpose is its inverse, so this must give back the input exactly.
fn round_trip<F>(x: &(Vec<usize>, Vec<f32>), op: F) -> Vec<f32>
where
    F: Fn(&mut Tape<'_, CpuBackend>, Var) -> diccae_engine::Result<Var>,
{
    let be = CpuBackend::new();
    let store = ParamStore::new(be.clone());
    let mut tape = Tape::new(&store);
    let v = tape.leaf(Tensor::from_host(&be, &x.0, &x.1).unwrap());
    let out = op(&mut tape, v).unwrap();
    let patches = tape.value(out).to_host(&be).unwrap();
    let grads = tape.backward_with_seed(out, patches).unwrap();
    grads.var(v).unwrap().clone()
}

#[test]
fn patchify_backward_inverts_forward() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for (b, f, t, p) in SPEC_SIZES {
        let x = random(&mut rng, &[b, f, t]);
        let back = round_trip(&x, |tp, v| patchify_spectrogram(tp, v, p));
        assert_eq!(back, x.1, "seed {seed} spectrogram [{b}, {f}, {t}] p{p}");
    }
    for (dims, tt, p) in VIDEO_SIZES {
        let x = random(&mut rng, &dims);
        let back = round_trip(&x, |tp, v| patchify_video(tp, v, tt, p));
        assert_eq!(back, x.1, "seed {seed} video {dims:?} t{tt} p{p}");
    }
    // The kernel adds into the clip rather than overwriting it.
    let be = CpuBackend::new();
    let spec = PatchSpec {
        batch: 3,
        frames: 4,
        channels: 3,
        height: 32,
        width: 32,
        tubelet: 2,
        patch: 8,
    };
    let x = normal_vec(&mut rng, spec.numel(), 1.0);
    let mut patches = vec![0.0; spec.numel()];
    be.patchify(&spec, &x, &mut patches).unwrap();
    let mut acc = vec![1.0f32; spec.numel()];
    be.unpatchify_add(&spec, &patches, &mut acc).unwrap();
    let want: Vec<f32> = x.iter().map(|v| v + 1.0).collect();
    assert_eq!(acc, want, "seed {seed}");
}

#[test]
fn patchify_gradients() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    for (b, f, t, p) in &SPEC_SIZES[..5] {
        let x = random(&mut rng, &[*b, *f, *t]);
        check_gradients(
            &format!("patchify_spectrogram [{b}, {f}, {t}] p{p}"),
            seed,
            &[x],
            &GradCheck::default(),
            |tp, v| patchify_spectrogram(tp, v[0], *p),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    for (dims, tt, p) in &VIDEO_SIZES[..5] {
        let x = random(&mut rng, dims);
        check_gradients(
            &format!("patchify_video {dims:?} t{tt} p{p}"),
            seed,
            &[x],
            &GradCheck::default(),
            |tp, v| patchify_video(tp, v[0], *tt, *p),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    // The encoder's front end: patchify, then pool the patch tokens.
    let x = random(&mut rng, &[3, 6, 9]);
    check_gradients(
        "patchify + mean_pool",
        seed,
        &[x],
        &GradCheck::default(),
        |tp, v| {
            let tokens = patchify_spectrogram(tp, v[0], 3)?;
            mean_pool(tp, tokens)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Asserts that `err` mentions every one of `parts`.
fn assert_mentions(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "error {err:?} does not mention {p:?}");
    }
}

#[test]
fn token_ops_reject_bad_shapes() {
    let e = error_of(&[&[3, 4]], |tp, v| mean_pool(tp, v[0]));
    assert_mentions(&e, &["mean_pool", "[3, 4]"]);
    let e = error_of(&[&[3, 0, 4]], |tp, v| mean_pool(tp, v[0]));
    assert_mentions(&e, &["mean_pool", "[3, 0, 4]"]);

    let e = error_of(&[], concat_tokens);
    assert_mentions(&e, &["concat_tokens"]);
    let e = error_of(&[&[3, 2, 5], &[2, 2, 5]], concat_tokens);
    assert_mentions(&e, &["concat_tokens", "[3, 2, 5]", "[2, 2, 5]"]);
    let e = error_of(&[&[3, 2, 5], &[3, 2, 4]], concat_tokens);
    assert_mentions(&e, &["[3, 2, 5]", "[3, 2, 4]"]);
    let e = error_of(&[&[3, 2, 5], &[3, 2]], concat_tokens);
    assert_mentions(&e, &["[3, 2]"]);

    let e = error_of(&[&[3, 7, 5]], |tp, v| narrow_tokens(tp, v[0], 5, 3));
    assert_mentions(&e, &["narrow_tokens", "[3, 7, 5]"]);
    let e = error_of(&[&[3, 7, 5]], |tp, v| narrow_tokens(tp, v[0], 2, 0));
    assert_mentions(&e, &["narrow_tokens", "[3, 7, 5]"]);
    let e = error_of(&[&[3, 7, 5]], |tp, v| {
        narrow_tokens(tp, v[0], usize::MAX, 2)
    });
    assert_mentions(&e, &["narrow_tokens"]);
    for at in [0, 7, 9] {
        let e = error_of(&[&[3, 7, 5]], |tp, v| {
            split_tokens(tp, v[0], at).map(|p| p.0)
        });
        assert_mentions(&e, &["split_tokens", "[3, 7, 5]"]);
    }

    let e = error_of(&[&[3, 7, 5]], |tp, v| reshape(tp, v[0], &[3, 36]));
    assert_mentions(&e, &["reshape", "[3, 7, 5]", "[3, 36]"]);

    let e = error_of(&[&[2, 10, 12]], |tp, v| patchify_spectrogram(tp, v[0], 4));
    assert_mentions(&e, &["patchify_spectrogram", "[2, 10, 12]", "4x4"]);
    let e = error_of(&[&[2, 12, 10]], |tp, v| patchify_spectrogram(tp, v[0], 4));
    assert_mentions(&e, &["[2, 12, 10]"]);
    let e = error_of(&[&[2, 12, 12]], |tp, v| patchify_spectrogram(tp, v[0], 0));
    assert_mentions(&e, &["patchify_spectrogram"]);
    let e = error_of(&[&[2, 1, 12, 12]], |tp, v| {
        patchify_spectrogram(tp, v[0], 4)
    });
    assert_mentions(&e, &["patchify_spectrogram", "[2, 1, 12, 12]"]);

    let e = error_of(&[&[2, 3, 3, 8, 8]], |tp, v| patchify_video(tp, v[0], 2, 4));
    assert_mentions(&e, &["patchify_video", "[2, 3, 3, 8, 8]", "2-frame", "4x4"]);
    let e = error_of(&[&[2, 4, 3, 8, 6]], |tp, v| patchify_video(tp, v[0], 2, 4));
    assert_mentions(&e, &["[2, 4, 3, 8, 6]"]);
    let e = error_of(&[&[2, 4, 3, 8, 8]], |tp, v| patchify_video(tp, v[0], 0, 4));
    assert_mentions(&e, &["patchify_video"]);
    let e = error_of(&[&[2, 4, 8, 8]], |tp, v| patchify_video(tp, v[0], 2, 4));
    assert_mentions(&e, &["patchify_video", "[2, 4, 8, 8]"]);

    // The kernel guards its own preconditions too.
    let be = CpuBackend::new();
    let spec = PatchSpec {
        batch: 1,
        frames: 1,
        channels: 1,
        height: 6,
        width: 4,
        tubelet: 1,
        patch: 4,
    };
    let err = be
        .patchify(&spec, &vec![0.0; 24], &mut vec![0.0; 24])
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["patchify"]);
}
