//! `train` end to end on small configurations: the run directory's contents,
//! real WAV/PNG files through a manifest, bad inputs, divergence, and resume.

use std::process::Command;

mod e2e_common;

use diccae_engine::device::Opened;
use diccae_engine::train::ablate::{AblationPlan, ablate};
use diccae_engine::train::eval_checkpoint::evaluate_checkpoint;
use diccae_engine::train::trainer::train;
use e2e_common::{
    build_manifest, epoch_records, fresh_dir, opts, rewrite_manifest, small, summary, write_wav,
};

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
    // `small` sets eval.knn_k = 5: the report names the k that ran.
    assert!(report.contains("kNN (k=5)"), "{report}");

    // `eval` on the run directory reproduces the final evaluation.
    let again =
        evaluate_checkpoint(&out, None, &[], &out.join("eval"), true, &Opened::cpu()).unwrap();
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

    // An evaluation-side override: a larger test split of the same data.
    let set = ["data.synthetic_test_per_class=6".to_string()];
    let larger =
        evaluate_checkpoint(&out, None, &set, &out.join("eval6"), true, &Opened::cpu()).unwrap();
    let test_clips = summary(&out.join("eval6"))["test_clips"].as_u64();
    assert_eq!(test_clips, Some(6 * 4), "4 classes × 6 clips");
    assert!(larger.fused_top1().is_some());
    // A key that would change the model is refused, naming the key.
    let set = ["model.dim=32".to_string()];
    let err = match evaluate_checkpoint(&out, None, &set, &out.join("bad"), true, &Opened::cpu()) {
        Ok(_) => panic!("model.dim cannot change at evaluation"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("model.dim"), "{err}");
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
            variants: &[],
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
        "avcl",
    ] {
        assert!(
            table.contains(&format!("| {name} |")),
            "{name} missing:\n{table}"
        );
    }
    assert!(out.join("ablation.md").exists() && out.join("ablation.json").exists());
    let _ = std::fs::remove_dir_all(&out);
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
    // A checkpoint is written only after a complete epoch: if one exists it
    // must load (no skipping on a load failure) and hold finite values only;
    // if none does, no epoch may have completed.
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(log.contains("rejected_step"), "no rejected step logged");
    let ckpt_dir = out.join("checkpoints");
    match diccae_engine::checkpoint::latest(&ckpt_dir).unwrap() {
        Some(_) => {
            let ckpt = diccae_engine::checkpoint::load(&ckpt_dir).unwrap();
            for (name, t) in &ckpt.tensors {
                assert!(t.data.iter().all(|v| v.is_finite()), "{name} is poisoned");
            }
        }
        None => assert!(
            epoch_records(&out).is_empty(),
            "an epoch completed but left no checkpoint"
        ),
    }
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

#[test]
fn gate_deadline_starts_the_cluster_terms_and_epochs_follow_the_data() {
    let out = fresh_dir("deadline");
    // L_ins can never pass a gate at 1% of chance; the deadline opens it
    // after half of the run, so the cluster terms train the other half.
    // train.epochs = 0 with 16 steps of 8 clips over 32 clips: 4 epochs.
    let cfg = small(&[
        "diccae.warmup_epochs=0",
        "diccae.chance_gate=0.01",
        "diccae.gate_deadline=0.5",
        "diccae.min_size_entropy=0",
        "train.epochs=0",
        "train.steps=16",
    ]);
    assert_eq!(cfg.epochs_for(32), 4);
    train(&cfg, &opts(&out, None), &Opened::cpu()).unwrap();
    let s = summary(&out);
    assert_eq!(
        s["epochs"], 4,
        "epochs chosen from the data: {}",
        s["epochs"]
    );
    assert_eq!(
        s.pointer("/clustering/terms_from_epoch"),
        Some(&serde_json::json!(2)),
        "cluster terms from epoch 2 (the deadline at 2 of 4 epochs)"
    );
    let lcls: Vec<bool> = epoch_records(&out)
        .iter()
        .map(|r| r["l_cls"].is_number())
        .collect();
    assert_eq!(
        lcls,
        [false, false, true, true],
        "L_cls trained after the deadline only"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_split_of_unreadable_or_silent_clips_is_a_clear_error() {
    let dir = fresh_dir("unusable");
    let manifest = build_manifest(&dir.join("data"), 16);
    // Every test clip's audio points at a missing file.
    let bad = dir.join("data/broken-test.jsonl");
    rewrite_manifest(&manifest, &bad, |v| {
        if v["split"] == "test" {
            v["audio"] = serde_json::json!("clips/missing.wav");
        }
    });
    let cfg = small(&[]);
    let err = train(&cfg, &opts(&dir.join("run1"), Some(bad)), &Opened::cpu())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no usable test clips")
            && err.contains("unreadable")
            && err.contains("missing.wav"),
        "{err}"
    );
    // Every clip silent: the spectrograms cannot be normalised.
    let silent_wav = dir.join("data/clips/silent.wav");
    write_wav(&silent_wav, 8_000, 1, 0.5, 0.0);
    let quiet = dir.join("data/silent.jsonl");
    rewrite_manifest(&manifest, &quiet, |v| {
        v["audio"] = serde_json::json!("clips/silent.wav");
    });
    let err = train(&cfg, &opts(&dir.join("run2"), Some(quiet)), &Opened::cpu())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("silent") && err.contains("silent.jsonl"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unlabelled_clip_in_a_labelled_manifest_is_a_counted_skip() {
    let dir = fresh_dir("one-unlabelled");
    let manifest = build_manifest(&dir.join("data"), 16);
    let mut dropped = None;
    let edited = dir.join("data/one-unlabelled.jsonl");
    rewrite_manifest(&manifest, &edited, |v| {
        if v["split"] == "test" && dropped.is_none() && v["label"].is_string() {
            v.as_object_mut().unwrap().remove("label");
            dropped = Some(v["id"].as_str().unwrap().to_string());
        }
    });
    let dropped = dropped.unwrap();
    let out = dir.join("run");
    train(&small(&[]), &opts(&out, Some(edited)), &Opened::cpu()).unwrap();
    let s = summary(&out);
    assert!(
        s.pointer("/linear_probe/fused/top1").is_some(),
        "the probes still run"
    );
    let skipped = std::fs::read_to_string(out.join("skipped.txt")).unwrap();
    assert!(
        skipped.contains(&format!("{dropped}:")) && skipped.contains("no label"),
        "{skipped}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unlabelled_manifest_needs_a_cluster_count_and_then_pretrains_without_probes() {
    let dir = fresh_dir("unlabelled");
    let manifest = build_manifest(&dir.join("data"), 16);
    let unlabelled = dir.join("data/unlabelled.jsonl");
    rewrite_manifest(&manifest, &unlabelled, |v| {
        v.as_object_mut().unwrap().remove("label");
    });
    // DICCAE's K follows the classes by default; without labels it must be
    // given, and the error says which key to set.
    let out = dir.join("run");
    let err = train(
        &small(&[]),
        &opts(&out, Some(unlabelled.clone())),
        &Opened::cpu(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("no labels") && err.contains("--set diccae.clusters="),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&out);
    train(
        &small(&["diccae.clusters=2"]),
        &opts(&out, Some(unlabelled)),
        &Opened::cpu(),
    )
    .unwrap();
    let s = summary(&out);
    assert!(
        s.pointer("/linear_probe/fused/top1").is_none() && s.pointer("/knn/fused/top1").is_none(),
        "no labels, no probes: {s}"
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("The data has no labels"), "{report}");
    assert!(
        epoch_records(&out).iter().all(|r| r["l_ins"].is_number()),
        "pretraining ran"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_cluster_gradient_cap_is_logged_where_the_cluster_terms_train() {
    let out = fresh_dir("cluster-cap");
    // The gate opens by the deadline after epoch 1 of 4; a cap of 1e-3 of
    // L_ins's gradient must bind at every step of the last two epochs.
    let cfg = small(&[
        "diccae.warmup_epochs=0",
        "diccae.chance_gate=0.01",
        "diccae.gate_deadline=0.5",
        "diccae.min_size_entropy=0",
        "diccae.cluster_grad_ratio=0.001",
        "train.epochs=4",
    ]);
    train(&cfg, &opts(&out, None), &Opened::cpu()).unwrap();
    let records = epoch_records(&out);
    let scales: Vec<Option<f64>> = records
        .iter()
        .map(|r| r["cluster_grad_scale"].as_f64())
        .collect();
    assert!(
        scales[..2].iter().all(Option::is_none),
        "no cluster terms, no scale: {scales:?}"
    );
    for s in &scales[2..] {
        let s = s.expect("the cluster terms trained");
        assert!(s > 0.0 && s < 1.0, "a binding cap scales down: {s}");
    }
    assert!(records[3]["l_cls"].is_number() && records[3]["l_conf"].is_number());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn the_fused_instance_term_adds_to_the_loss_with_its_weight() {
    let out = fresh_dir("fused-term");
    let cfg = small(&[
        "diccae.lambda_cls=0",
        "diccae.lambda_conf=0",
        "diccae.lambda_fused=0.5",
        "train.epochs=2",
    ]);
    train(&cfg, &opts(&out, None), &Opened::cpu()).unwrap();
    let records = epoch_records(&out);
    assert_eq!(records.len(), 2);
    for r in &records {
        let fused = loss_is_ins_plus_half_fused(r);
        // Two InfoNCE terms over a batch of 8 start near ln 8.
        assert!(fused > 0.5 && fused < 2.0 * 8f64.ln(), "L_fus {fused}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn the_fused_instance_term_can_wait_for_the_gate() {
    let out = fresh_dir("fused-from-gate");
    // L_ins cannot pass a gate at 1 % of chance in three epochs, so the
    // deadline (half the run: epoch 2) opens it; no ramp.
    let cfg = small(&[
        "diccae.lambda_cls=0",
        "diccae.lambda_conf=0",
        "diccae.lambda_fused=0.5",
        "diccae.fused_from_gate=true",
        "diccae.chance_gate=0.01",
        "diccae.gate_deadline=0.5",
        "diccae.warmup_epochs=0",
        "diccae.ramp_epochs=0",
        "train.epochs=3",
    ]);
    train(&cfg, &opts(&out, None), &Opened::cpu()).unwrap();
    let records = epoch_records(&out);
    assert_eq!(records.len(), 3);
    for r in &records[..2] {
        assert!(r.get("l_fused").is_none(), "L_fus before the gate: {r}");
        let (loss, ins) = (r["loss"].as_f64().unwrap(), r["l_ins"].as_f64().unwrap());
        assert!((loss - ins).abs() < 1e-6 * loss.abs().max(1.0), "{r}");
    }
    loss_is_ins_plus_half_fused(&records[2]);
    let _ = std::fs::remove_dir_all(&out);
}

/// Checks an epoch record's loss is `L_ins + 0.5·L_fus` and returns L_fus.
fn loss_is_ins_plus_half_fused(r: &serde_json::Value) -> f64 {
    let (loss, ins) = (r["loss"].as_f64().unwrap(), r["l_ins"].as_f64().unwrap());
    let fused = r["l_fused"]
        .as_f64()
        .unwrap_or_else(|| panic!("l_fused not logged: {r}"));
    assert!(
        (loss - ins - 0.5 * fused).abs() < 1e-4 * loss.abs().max(1.0),
        "loss {loss} ≠ L_ins {ins} + 0.5·L_fus {fused}"
    );
    fused
}
