//! `train` end to end on small configurations: the run directory's contents,
//! real WAV/PNG files through a manifest, bad inputs, divergence, and resume.

use std::path::{Path, PathBuf};
use std::process::Command;

use diccae_engine::backend::device::Opened;
use diccae_engine::config::Config;
use diccae_engine::train::ablate::{AblationPlan, ablate};
use diccae_engine::train::trainer::{TrainOptions, evaluate_checkpoint, train};

/// A model and data small enough to train in a second or two.
fn small(extra: &[&str]) -> Config {
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

fn fresh_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diccae-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn opts(out: &Path, data: Option<PathBuf>) -> TrainOptions {
    TrainOptions {
        out: out.to_path_buf(),
        data,
        resume: false,
        quiet: true,
    }
}

fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn built_in_data_run_writes_every_output() {
    let out = fresh_dir("builtin");
    // Open the cluster gate at once so a clustering round and the cluster terms run.
    let cfg = small(&[
        "diccae.warmup_epochs=0",
        "diccae.chance_gate=100",
        "diccae.min_size_entropy=0",
        "train.epochs=3",
    ]);
    train(&cfg, &opts(&out, None), &Opened::cpu()).unwrap();
    for f in [
        "config.toml",
        "metrics.jsonl",
        "summary.json",
        "report.md",
        "plots/losses.png",
        "plots/confusion.png",
        "plots/clustering.png",
        "plots/weights.png",
        "checkpoints/latest",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let s = summary(&out);
    for path in [
        "/linear_probe/audio/top1",
        "/linear_probe/video/top5",
        "/linear_probe/fused/top1",
        "/knn/fused/top1",
        "/random_init/linear_probe/fused/top1",
        "/retrieval/audio_to_video/r10",
        "/kmeans_nmi",
        "/random_init/kmeans_nmi",
        "/seconds",
    ] {
        let v = s
            .pointer(path)
            .unwrap_or_else(|| panic!("{path} missing from summary.json"));
        assert!(v.as_f64().is_some_and(f64::is_finite), "{path} = {v}");
    }
    let nmi = s
        .pointer("/clustering/nmi")
        .and_then(|v| v.as_array())
        .unwrap();
    assert!(!nmi.is_empty(), "no clustering round recorded");
    let epochs = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"kind\":\"epoch\""))
        .count();
    assert_eq!(epochs, 3);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("linear probe") && report.contains("plots/losses.png"));

    // `eval` on the run directory reproduces the final evaluation.
    let again = evaluate_checkpoint(&out, None, &out.join("eval"), true, &Opened::cpu()).unwrap();
    let fused = s
        .pointer("/linear_probe/fused/top1")
        .and_then(|v| v.as_f64())
        .unwrap();
    assert!(
        (again.fused_top1().unwrap() - fused).abs() < 1e-9,
        "{:?} vs {fused}",
        again.fused_top1()
    );
    assert!(out.join("eval/summary.json").exists());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn ablate_writes_one_table_over_variants() {
    let out = fresh_dir("ablate");
    let overrides: Vec<String> = Vec::new();
    let cfg_path = out.join("base.toml");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        &cfg_path,
        small(&[
            "diccae.warmup_epochs=0",
            "diccae.chance_gate=100",
            "diccae.min_size_entropy=0",
        ])
        .to_toml()
        .unwrap(),
    )
    .unwrap();
    let table = ablate(
        &AblationPlan {
            preset: None,
            config_file: Some(&cfg_path),
            overrides: &overrides,
            seeds: 1,
            first_seed: 0,
            out: out.clone(),
            data: None,
        },
        &Opened::cpu(),
    )
    .unwrap();
    for name in [
        "random_init",
        "full",
        "no_conf",
        "static_w",
        "no_cls",
        "infonce_only",
    ] {
        assert!(
            table.contains(&format!("| {name} |")),
            "{name} missing:\n{table}"
        );
    }
    assert!(out.join("ablation.md").exists() && out.join("ablation.json").exists());
    let _ = std::fs::remove_dir_all(&out);
}

fn write_wav(path: &Path, rate: u32, channels: u16, seconds: f32, freq: f32) {
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

fn write_png(path: &Path, shade: u8, x0: u32) {
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
fn build_manifest(dir: &Path, n: usize) -> PathBuf {
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
                write_png(
                    &dir.join(format!("{fdir}/{t:02}.png")),
                    100 + 100 * class as u8,
                    2 + 3 * t,
                );
            }
            serde_json::json!(format!("{fdir}/"))
        } else {
            let names: Vec<String> = (0..2).map(|t| format!("clips/g{i}_{t}.png")).collect();
            for (t, name) in names.iter().enumerate() {
                write_png(&dir.join(name), 100 + 100 * class as u8, 2 + 4 * t as u32);
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

#[test]
fn manifest_of_real_files_trains_and_skips_a_corrupt_clip() {
    let root = fresh_dir("manifest");
    let manifest = build_manifest(&root.join("data"), 24);
    let out = root.join("run");
    train(&small(&[]), &opts(&out, Some(manifest)), &Opened::cpu()).unwrap();
    let s = summary(&out);
    assert_eq!(s["skipped_clips"], 1);
    assert_eq!(s["train_clips"], 18);
    assert_eq!(s["test_clips"], 6);
    assert!(
        s.pointer("/linear_probe/fused/top1")
            .and_then(|v| v.as_f64())
            .is_some()
    );
    let skipped = std::fs::read_to_string(out.join("skipped.txt")).unwrap();
    assert!(
        skipped.contains("broken") && skipped.contains("broken.wav"),
        "{skipped}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_inputs_give_clear_errors() {
    let root = fresh_dir("bad");
    // Empty manifest.
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("manifest.jsonl"), "").unwrap();
    let err = train(
        &small(&[]),
        &opts(&root.join("run1"), Some(root.clone())),
        &Opened::cpu(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("manifest.jsonl"), "{err}");
    // A missing frame: the clip is skipped and named.
    let data = root.join("data");
    let manifest = build_manifest(&data, 12);
    std::fs::remove_file(data.join("clips/g1_1.png")).unwrap();
    let out = root.join("run2");
    train(&small(&[]), &opts(&out, Some(manifest)), &Opened::cpu()).unwrap();
    let skipped = std::fs::read_to_string(out.join("skipped.txt")).unwrap();
    assert!(
        skipped.contains("clip1") && skipped.contains("g1_1.png"),
        "{skipped}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_diverging_run_stops_without_a_poisoned_checkpoint() {
    let out = fresh_dir("nan");
    let err = train(
        &small(&["train.lr=1e30", "train.warmup_epochs=0", "train.epochs=3"]),
        &opts(&out, None),
        &Opened::cpu(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("non-finite") || err.contains("poisoned"),
        "{err}"
    );
    // Whatever checkpoint exists holds finite values only: it loads, and every tensor is finite.
    if let Ok(ckpt) = diccae_engine::checkpoint::load(&out.join("checkpoints")) {
        for (name, t) in &ckpt.tensors {
            assert!(t.data.iter().all(|v| v.is_finite()), "{name} is poisoned");
        }
    }
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(log.contains("rejected_step"), "no rejected step logged");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_killed_run_resumes_and_a_truncated_checkpoint_is_refused() {
    let out = fresh_dir("resume");
    let bin = env!("CARGO_BIN_EXE_diccae-engine");
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = vec!["train".into(), "--out".into(), out.display().to_string()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let mut sets = vec!["train.epochs=6", "data.synthetic_train_per_class=100"];
    let cfg = small(&sets);
    std::fs::create_dir_all(&out).unwrap();
    let cfg_path = out.join("start.toml");
    std::fs::write(&cfg_path, cfg.to_toml().unwrap()).unwrap();
    let mut child = Command::new(bin)
        .args(args(&["--config", cfg_path.to_str().unwrap()]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the first checkpoint is in place (mid-way through a later epoch).
    let latest = out.join("checkpoints/latest");
    let start = std::time::Instant::now();
    while !latest.exists() && start.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(latest.exists(), "no checkpoint within 2 minutes");
    let done_before = std::fs::read_to_string(&latest).unwrap();
    assert_ne!(
        done_before.trim(),
        "epoch-0006",
        "the run finished before it could be killed"
    );

    let status = Command::new(bin)
        .args(args(&["--resume"]))
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.contains("resumed from"), "{stdout}");
    let s = summary(&out);
    assert_eq!(s["epochs"], 6);
    let epochs: Vec<u64> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kind"] == "epoch")
        .filter_map(|v| v["record"]["epoch"].as_u64())
        .collect();
    assert_eq!(
        epochs,
        vec![0, 1, 2, 3, 4, 5],
        "after resuming from {done_before}"
    );

    // Truncate the newest checkpoint's tensors: resuming must refuse it.
    let newest = out
        .join("checkpoints")
        .join(std::fs::read_to_string(&latest).unwrap().trim());
    let tensors = newest.join("tensors.safetensors");
    let bytes = std::fs::read(&tensors).unwrap();
    std::fs::write(&tensors, &bytes[..bytes.len() / 2]).unwrap();
    sets.clear();
    let refused = Command::new(bin)
        .args(args(&["--resume"]))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("truncated") && err.contains("refusing"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
