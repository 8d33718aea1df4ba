//! Helpers shared by the end-to-end tests: a small configuration, fresh
//! run directories, and a manifest of real WAV/PNG files.

#![allow(dead_code)] // each test file uses a subset

use std::path::{Path, PathBuf};

use diccae_engine::config::Config;
use diccae_engine::train::trainer::TrainOptions;

/// A model and data small enough to train in a second or two.
pub fn small(extra: &[&str]) -> Config {
    let mut sets: Vec<String> = [
        "model.dim=16",
        "model.heads=2",
        "model.audio_layers=1",
        "model.video_layers=1",
        "model.fusion_layers=1",
        "model.proj_dim=8",
        "model.audio_patch=8",
        "model.tubelet_size=8",
        "data.n_mels=16",
        "data.audio_frames=16",
        "data.frames=2",
        "data.frame_size=16",
        "data.synthetic_classes=4",
        "data.synthetic_train_per_class=8",
        "data.synthetic_test_per_class=4",
        "train.batch_size=8",
        "train.epochs=2",
        "train.warmup_epochs=0.5",
        "eval.probe_epochs=20",
        "eval.knn_k=5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    sets.extend(extra.iter().map(|s| s.to_string()));
    Config::resolve(None, None, &sets).unwrap()
}

pub fn fresh_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diccae-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub fn opts(out: &Path, data: Option<PathBuf>) -> TrainOptions {
    TrainOptions {
        out: out.to_path_buf(),
        data,
        resume: false,
        quiet: true,
        overwrite: false,
    }
}

pub fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

/// The `epoch` records of a run's metrics.jsonl.
pub fn epoch_records(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "epoch")
        .map(|v| v["record"].clone())
        .collect()
}

/// A 16-bit sine WAV (`freq = 0`: silence).
pub fn write_wav(path: &Path, rate: u32, channels: u16, seconds: f32, freq: f32) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..(seconds * rate as f32) as usize {
        let v = (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * 0.5;
        for _ in 0..channels {
            w.write_sample((v * 32767.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// A 20×20 frame with a bright bar at `x0` (PNG or JPEG by the extension).
pub fn write_frame(path: &Path, shade: u8, x0: u32) {
    let img = image::RgbImage::from_fn(20, 20, |x, _| {
        if x >= x0 && x < x0 + 5 {
            image::Rgb([shade, 40, 200])
        } else {
            image::Rgb([30, 30, 30])
        }
    });
    img.save(path).unwrap();
}

/// A manifest of `n` real clips over two classes, 8 kHz mono and 44.1 kHz
/// stereo WAVs, frames as a list or a directory; plus one corrupt WAV.
pub fn build_manifest(dir: &Path, n: usize) -> PathBuf {
    std::fs::create_dir_all(dir.join("clips")).unwrap();
    let mut lines = Vec::new();
    for i in 0..n {
        let class = i % 2;
        let wav = format!("clips/c{i}.wav");
        if i % 3 == 0 {
            write_wav(&dir.join(&wav), 8_000, 1, 0.3, 300.0 + 500.0 * class as f32);
        } else {
            write_wav(
                &dir.join(&wav),
                44_100,
                2,
                0.25,
                300.0 + 500.0 * class as f32,
            );
        }
        let frames = if i % 2 == 0 {
            let fdir = format!("clips/f{i}");
            std::fs::create_dir_all(dir.join(&fdir)).unwrap();
            for t in 0..3 {
                write_frame(
                    &dir.join(format!("{fdir}/{t:02}.png")),
                    100 + 100 * class as u8,
                    2 + 3 * t,
                );
            }
            serde_json::json!(format!("{fdir}/"))
        } else {
            let names: Vec<String> = (0..2).map(|t| format!("clips/g{i}_{t}.png")).collect();
            for (t, name) in names.iter().enumerate() {
                write_frame(&dir.join(name), 100 + 100 * class as u8, 2 + 4 * t as u32);
            }
            serde_json::json!(names)
        };
        let split = if i % 4 == 3 { "test" } else { "train" };
        lines.push(serde_json::json!({"id": format!("clip{i}"), "audio": wav, "frames": frames, "label": format!("class{class}"), "split": split}).to_string());
    }
    std::fs::write(
        dir.join("clips/broken.wav"),
        b"RIFF\x10\x00\x00\x00WAVEjunk",
    )
    .unwrap();
    lines.push(serde_json::json!({"id": "broken", "audio": "clips/broken.wav", "frames": ["clips/g1_0.png"], "label": "class0", "split": "train"}).to_string());
    let manifest = dir.join("manifest.jsonl");
    std::fs::write(&manifest, lines.join("\n") + "\n").unwrap();
    manifest
}

/// Writes `dest`, a copy of the manifest `src` with `edit` applied to each
/// line's JSON object.
pub fn rewrite_manifest(src: &Path, dest: &Path, mut edit: impl FnMut(&mut serde_json::Value)) {
    let lines: Vec<String> = std::fs::read_to_string(src)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            edit(&mut v);
            v.to_string()
        })
        .collect();
    std::fs::write(dest, lines.join("\n") + "\n").unwrap();
}
