//! The built-in dataset: deterministic, well-formed, balanced, synchronised.

use diccae_engine::data::Split;
use diccae_engine::synthetic::{SyntheticConfig, class_names, confusable_pairs, sound_envelope};

fn small() -> SyntheticConfig {
    SyntheticConfig {
        train_per_class: 3,
        test_per_class: 2,
        ..SyntheticConfig::default()
    }
}

#[test]
fn generation_is_deterministic_and_well_formed() {
    let cfg = small();
    let a = cfg.generate(Split::Train).unwrap();
    let b = cfg.generate(Split::Train).unwrap();
    assert_eq!(a.len(), 30);
    let (t, s) = (cfg.frames, cfg.frame_size);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.id, y.id);
        assert_eq!(x.audio, y.audio);
        assert_eq!(x.frames, y.frames);
        assert_eq!(x.audio.len(), 16_000);
        assert_eq!(x.frames.len(), t * 3 * s * s);
        assert!(x.audio.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
        assert!(x.frames.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    // Balanced and class-interleaved.
    for (i, c) in a.iter().enumerate() {
        assert_eq!(c.label, i % 10);
    }
    // Another seed or split gives other clips.
    let other = SyntheticConfig { seed: 1, ..small() }
        .generate(Split::Train)
        .unwrap();
    assert_ne!(a[0].audio, other[0].audio);
    let test = cfg.generate(Split::Test).unwrap();
    assert_eq!(test.len(), 20);
    assert_ne!(a[0].frames, test[0].frames);
    let mut ids: Vec<_> = a.iter().chain(&test).map(|c| c.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
}

#[test]
fn names_and_pairs() {
    let names = class_names(10);
    assert_eq!(names.len(), 10);
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10, "{names:?}");
    assert_eq!(
        confusable_pairs(10),
        vec![(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    );
    assert!(
        SyntheticConfig {
            n_classes: 7,
            ..small()
        }
        .validate()
        .is_err()
    );
    assert!(
        SyntheticConfig {
            n_classes: 12,
            ..small()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn sound_pulses_follow_the_clips_own_rhythm() {
    // The audio energy in short windows correlates with the clip's own
    // rhythm envelope far better than with another clip's.
    let cfg = small();
    let clips = cfg.generate(Split::Train).unwrap();
    let window = 400;
    let energy = |audio: &[f32]| -> Vec<f32> {
        audio
            .chunks(window)
            .map(|w| w.iter().map(|v| v * v).sum::<f32>())
            .collect()
    };
    let envelope = |rate: f32, phase: f32, n: usize| -> Vec<f32> {
        (0..n)
            .map(|k| {
                let t = (k as f32 + 0.5) * window as f32 / 16_000.0;
                sound_envelope(t, rate, phase)
            })
            .collect()
    };
    let corr = |a: &[f32], b: &[f32]| -> f32 {
        let n = a.len() as f32;
        let (ma, mb) = (a.iter().sum::<f32>() / n, b.iter().sum::<f32>() / n);
        let cov: f32 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f32 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f32 = b.iter().map(|y| (y - mb).powi(2)).sum();
        cov / (va * vb).sqrt().max(1e-12)
    };
    let mut own_wins = 0;
    for (i, c) in clips.iter().enumerate() {
        let e = energy(&c.audio);
        let other = &clips[(i + 7) % clips.len()];
        let own = corr(&e, &envelope(c.rate_hz, c.phase, e.len()));
        let foreign = corr(&e, &envelope(other.rate_hz, other.phase, e.len()));
        assert!(own > 0.5, "clip {} own-rhythm correlation {own}", c.id);
        if own > foreign {
            own_wins += 1;
        }
    }
    assert!(
        own_wins >= clips.len() * 9 / 10,
        "{own_wins}/{}",
        clips.len()
    );
}
