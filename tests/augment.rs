//! SelfCL view augmentations (src/data/augment.rs): shapes, determinism for
//! a seed, every transform changes its input (and is the identity at
//! strength 0), values stay finite / in range, flip twice is the identity,
//! masks cover the stated widths, crops resample correctly.

use diccae_engine::data::augment::{
    AugmentConfig, CropBox, adjust_brightness, adjust_contrast, adjust_saturation, augment_audio,
    augment_audio_batch, augment_video, augment_video_normalised, flip_video, freq_mask,
    resized_crop, time_mask, time_shift,
};
use diccae_engine::gradcheck::test_seed;
use diccae_engine::rng::{SeededRng, normal_vec, seeded, uniform_vec};

const MELS: usize = 16;
const FRAMES: usize = 50;
const T: usize = 4;
const S: usize = 12;

fn spec(rng: &mut SeededRng) -> Vec<f32> {
    normal_vec(rng, MELS * FRAMES, 1.0)
}

fn clip(rng: &mut SeededRng) -> Vec<f32> {
    uniform_vec(rng, T * 3 * S * S, 0.05, 0.95)
}

/// A config with only `set` applied on top of everything off.
fn only(set: impl FnOnce(&mut AugmentConfig)) -> AugmentConfig {
    let mut c = AugmentConfig::none();
    set(&mut c);
    c
}

/// Runs `f` on a fresh copy of `x` with RNG seed `seed`.
fn view<F>(x: &[f32], seed: u64, f: F) -> Vec<f32>
where
    F: FnOnce(&mut [f32], &mut SeededRng),
{
    let mut y = x.to_vec();
    f(&mut y, &mut seeded(seed));
    y
}

fn audio_view(cfg: &AugmentConfig, x: &[f32], seed: u64) -> Vec<f32> {
    view(x, seed, |y, r| {
        augment_audio(cfg, y, MELS, FRAMES, r).unwrap()
    })
}

fn video_view(cfg: &AugmentConfig, x: &[f32], seed: u64) -> Vec<f32> {
    view(x, seed, |y, r| augment_video(cfg, y, T, S, r).unwrap())
}

#[test]
fn views_are_deterministic_for_a_seed_and_differ_across_seeds() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let (a, v) = (spec(&mut rng), clip(&mut rng));
    let cfg = AugmentConfig::default();
    assert_eq!(audio_view(&cfg, &a, seed), audio_view(&cfg, &a, seed));
    assert_eq!(video_view(&cfg, &v, seed), video_view(&cfg, &v, seed));
    assert_ne!(audio_view(&cfg, &a, seed), audio_view(&cfg, &a, seed ^ 1));
    assert_ne!(video_view(&cfg, &v, seed), video_view(&cfg, &v, seed ^ 1));
}

#[test]
fn everything_off_is_the_identity() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let (a, v) = (spec(&mut rng), clip(&mut rng));
    let none = AugmentConfig::none();
    assert_eq!(audio_view(&none, &a, seed), a);
    assert_eq!(video_view(&none, &v, seed), v);
    // Widths without masks, or masks without width, mask nothing.
    let zero_width = only(|c| {
        c.time_masks = 3;
        c.freq_masks = 3;
    });
    assert_eq!(audio_view(&zero_width, &a, seed), a);
}

#[test]
fn each_audio_transform_changes_the_input() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let a = spec(&mut rng);
    let cases: Vec<(&str, AugmentConfig)> = vec![
        ("time shift", only(|c| c.time_shift = 0.2)),
        (
            "circular time shift",
            only(|c| {
                c.time_shift = 0.2;
                c.time_shift_circular = true;
            }),
        ),
        ("gain", only(|c| c.gain = 0.5)),
        ("noise", only(|c| c.noise_std = 0.1)),
        (
            "time masks",
            only(|c| {
                c.time_masks = 2;
                c.time_mask_width = 8;
            }),
        ),
        (
            "frequency masks",
            only(|c| {
                c.freq_masks = 2;
                c.freq_mask_width = 4;
            }),
        ),
    ];
    for (name, cfg) in cases {
        // A transform may draw its identity (shift 0, width 0) for a seed:
        // require a change in at least 5 of 8 views (the worst case, the
        // shift's 1/21 chance of 0, misses that with probability ~4e-4).
        let changed = (0..8u64)
            .filter(|&k| audio_view(&cfg, &a, seed.wrapping_add(k)) != a)
            .count();
        assert!(
            changed >= 5,
            "seed {seed}: {name} changed {changed} of 8 views"
        );
    }
}

#[test]
fn each_video_transform_changes_the_input() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let v = clip(&mut rng);
    let cases: Vec<(&str, AugmentConfig)> = vec![
        ("temporal jitter", only(|c| c.temporal_jitter = 2)),
        ("frame repeats", only(|c| c.frame_repeat_prob = 0.6)),
        ("crop", only(|c| c.crop_min_scale = 0.3)),
        ("aspect", only(|c| c.crop_max_aspect = 2.0)),
        ("flip", only(|c| c.flip_prob = 1.0)),
        ("brightness", only(|c| c.brightness = 0.4)),
        ("contrast", only(|c| c.contrast = 0.4)),
        ("saturation", only(|c| c.saturation = 0.4)),
    ];
    for (name, cfg) in cases {
        let changed = (0..8u64)
            .filter(|&k| video_view(&cfg, &v, seed.wrapping_add(k)) != v)
            .count();
        assert!(
            changed >= 2,
            "seed {seed}: {name} changed {changed} of 8 views"
        );
    }
}

#[test]
fn values_stay_finite_and_frames_in_range() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let strong = AugmentConfig {
        time_shift: 1.0,
        gain: 3.0,
        noise_std: 2.0,
        time_masks: 4,
        time_mask_width: FRAMES,
        freq_masks: 4,
        freq_mask_width: MELS,
        temporal_jitter: 10,
        frame_repeat_prob: 1.0,
        crop_min_scale: 0.01,
        crop_max_aspect: 10.0,
        flip_prob: 1.0,
        brightness: 1.0,
        contrast: 1.0,
        saturation: 1.0,
        ..AugmentConfig::default()
    };
    for k in 0..20u64 {
        let (a, v) = (spec(&mut rng), clip(&mut rng));
        for cfg in [&strong, &AugmentConfig::default()] {
            let av = audio_view(cfg, &a, seed.wrapping_add(k));
            assert_eq!(av.len(), a.len());
            assert!(av.iter().all(|x| x.is_finite()), "seed {seed}");
            let vv = video_view(cfg, &v, seed.wrapping_add(k));
            assert_eq!(vv.len(), v.len());
            assert!(vv.iter().all(|x| (0.0..=1.0).contains(x)), "seed {seed}");
        }
    }
}

#[test]
fn flip_twice_is_the_identity() {
    let mut rng = seeded(test_seed());
    let v = clip(&mut rng);
    let mut w = v.clone();
    flip_video(&mut w, S);
    assert_ne!(w, v);
    assert_eq!(w[0], v[S - 1]);
    flip_video(&mut w, S);
    assert_eq!(w, v);
}

#[test]
fn time_shift_moves_frames_and_fills_or_wraps() {
    // Two mel rows of 5 frames.
    let x: Vec<f32> = (0..10).map(|i| i as f32).collect();
    let mut y = x.clone();
    time_shift(&mut y, 5, 2, false, -1.0);
    assert_eq!(y, [-1., -1., 0., 1., 2., -1., -1., 5., 6., 7.]);
    let mut y = x.clone();
    time_shift(&mut y, 5, -2, true, -1.0);
    assert_eq!(y, [2., 3., 4., 0., 1., 7., 8., 9., 5., 6.]);
    let mut y = x.clone();
    time_shift(&mut y, 5, -7, false, -1.0);
    assert_eq!(y, [-1.0; 10]);
}

/// Columns (frames) of `y` that differ from `x` in every mel row.
fn masked_frames(x: &[f32], y: &[f32]) -> Vec<usize> {
    (0..FRAMES)
        .filter(|&f| (0..MELS).all(|m| x[m * FRAMES + f] != y[m * FRAMES + f]))
        .collect()
}

#[test]
fn masks_cover_the_stated_widths() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let a = spec(&mut rng);
    // Fixed masks: exactly the stated frames / bands.
    let mut y = a.clone();
    time_mask(&mut y, FRAMES, 7, 5, 0.25);
    for m in 0..MELS {
        for f in 0..FRAMES {
            let want = if (7..12).contains(&f) {
                0.25
            } else {
                a[m * FRAMES + f]
            };
            assert_eq!(y[m * FRAMES + f], want);
        }
    }
    let mut y = a.clone();
    freq_mask(&mut y, FRAMES, 14, 9, 0.5); // clipped at the last band
    assert!(y[14 * FRAMES..].iter().all(|&v| v == 0.5));
    assert_eq!(y[..14 * FRAMES], a[..14 * FRAMES]);

    // Random masks: one contiguous run of at most the width, reaching it.
    let w = 6;
    let cfg = only(|c| {
        c.time_masks = 1;
        c.time_mask_width = w;
    });
    let mut widest = 0;
    for k in 0..200u64 {
        let y = audio_view(&cfg, &a, seed.wrapping_add(k));
        let cols = masked_frames(&a, &y);
        if let (Some(&lo), Some(&hi)) = (cols.first(), cols.last()) {
            assert_eq!(
                hi - lo + 1,
                cols.len(),
                "seed {seed}: not contiguous {cols:?}"
            );
        }
        assert!(cols.len() <= w, "seed {seed}: {} frames masked", cols.len());
        widest = widest.max(cols.len());
    }
    assert_eq!(widest, w, "seed {seed}: no mask reached the width");
}

#[test]
fn resized_crop_is_bilinear_and_full_box_is_identity() {
    let mut rng = seeded(test_seed());
    let v = clip(&mut rng);
    let full = CropBox {
        x0: 0.0,
        y0: 0.0,
        w: S as f32,
        h: S as f32,
    };
    let mut y = v.clone();
    resized_crop(&mut y, S, full);
    assert_eq!(y, v);

    // A horizontal ramp stays a ramp: bilinear is exact on linear images.
    let ramp: Vec<f32> = (0..3 * S * S).map(|i| (i % S) as f32).collect();
    let crop = CropBox {
        x0: 2.0,
        y0: 1.5,
        w: 6.0,
        h: 8.0,
    };
    let mut y = ramp.clone();
    resized_crop(&mut y, S, crop);
    for (i, &got) in y.iter().enumerate() {
        let o = (i % S) as f32;
        let want = (crop.x0 + (o + 0.5) * crop.w / S as f32 - 0.5).clamp(0.0, (S - 1) as f32);
        assert!((got - want).abs() < 1e-5, "pixel {i}: {got} vs {want}");
    }
}

#[test]
fn colour_adjustments_do_what_they_say() {
    let mut rng = seeded(test_seed());
    let v = clip(&mut rng);
    let mut y = v.clone();
    adjust_brightness(&mut y, 0.5);
    assert!(y.iter().zip(&v).all(|(a, b)| (a - 0.5 * b).abs() < 1e-7));
    let mut y = v.clone();
    adjust_saturation(&mut y, S, 0.0);
    let plane = S * S;
    for frame in y.chunks_exact(3 * plane) {
        for p in 0..plane {
            let (r, g, b) = (frame[p], frame[plane + p], frame[2 * plane + p]);
            assert!((r - g).abs() < 1e-6 && (g - b).abs() < 1e-6);
        }
    }
    let mut y = v.clone();
    adjust_contrast(&mut y, S, 0.0);
    for frame in y.chunks_exact(3 * plane) {
        assert!(frame.iter().all(|&x| (x - frame[0]).abs() < 1e-6));
    }
}

#[test]
fn temporal_jitter_only_picks_existing_frames_in_order() {
    let seed = test_seed();
    // Frame t filled with the value t.
    let v: Vec<f32> = (0..T * 3 * S * S)
        .map(|i| (i / (3 * S * S)) as f32)
        .collect();
    let cfg = only(|c| {
        c.temporal_jitter = 2;
        c.frame_repeat_prob = 0.3;
    });
    for k in 0..20u64 {
        let y = video_view(&cfg, &v, seed.wrapping_add(k));
        let picks: Vec<f32> = y.chunks_exact(3 * S * S).map(|f| f[0]).collect();
        for (f, &p) in y.chunks_exact(3 * S * S).zip(&picks) {
            assert!(f.iter().all(|&x| x == p), "seed {seed}: mixed frame");
        }
        assert!(
            picks.windows(2).all(|w| w[0] <= w[1]),
            "seed {seed}: {picks:?}"
        );
    }
}

#[test]
fn normalised_wrapper_round_trips_and_batches_work() {
    let seed = test_seed();
    let mut rng = seeded(seed);
    let v: Vec<f32> = normal_vec(&mut rng, T * 3 * S * S, 0.5);
    let mut y = v.clone();
    augment_video_normalised(&AugmentConfig::none(), &mut y, T, S, &mut seeded(seed)).unwrap();
    // |v| ≤ ~2.5 stays inside [0, 1] once un-normalised for most pixels;
    // compare where it does.
    let inside = v.iter().zip(&y).filter(|(a, _)| a.abs() < 0.4);
    for (a, b) in inside {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }

    let batch: Vec<f32> = normal_vec(&mut rng, 3 * MELS * FRAMES, 1.0);
    let mut y = batch.clone();
    augment_audio_batch(
        &AugmentConfig::default(),
        &mut y,
        MELS,
        FRAMES,
        &mut seeded(seed),
    )
    .unwrap();
    assert_eq!(y.len(), batch.len());
    assert!(
        y.chunks_exact(MELS * FRAMES)
            .zip(batch.chunks_exact(MELS * FRAMES))
            .all(|(a, b)| a != b)
    );
}

#[test]
fn wrong_shapes_and_bad_configs_are_errors() {
    let mut r = seeded(1);
    let cfg = AugmentConfig::default();
    let mut short = vec![0.0f32; MELS * FRAMES - 1];
    let e = augment_audio(&cfg, &mut short, MELS, FRAMES, &mut r).unwrap_err();
    assert!(e.to_string().contains("augment_audio"), "{e}");
    let mut short = vec![0.0f32; T * 3 * S * S + 1];
    assert!(augment_video(&cfg, &mut short, T, S, &mut r).is_err());
    assert!(augment_audio_batch(&cfg, &mut [0.0; 7], MELS, FRAMES, &mut r).is_err());
    let mut a = vec![0.0f32; MELS * FRAMES];
    for bad in [
        AugmentConfig {
            flip_prob: 1.5,
            ..AugmentConfig::default()
        },
        AugmentConfig {
            crop_min_scale: 0.0,
            ..AugmentConfig::default()
        },
        AugmentConfig {
            crop_max_aspect: 0.5,
            ..AugmentConfig::default()
        },
        AugmentConfig {
            noise_std: f32::NAN,
            ..AugmentConfig::default()
        },
        AugmentConfig {
            gain: -1.0,
            ..AugmentConfig::default()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
        assert!(augment_audio(&bad, &mut a, MELS, FRAMES, &mut r).is_err());
    }
}

#[test]
fn config_serialises_and_fills_defaults() {
    let cfg = AugmentConfig::default();
    let json = serde_json::to_string(&cfg).unwrap();
    let back: AugmentConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cfg);
    let partial: AugmentConfig = serde_json::from_str(r#"{"gain": 0.25}"#).unwrap();
    assert_eq!(
        partial,
        AugmentConfig {
            gain: 0.25,
            ..AugmentConfig::default()
        }
    );
    assert!(serde_json::from_str::<AugmentConfig>(r#"{"gian": 0.25}"#).is_err());
}
