//! `train --method avcl` end to end: every output of a DICCAE run with the
//! AVCL terms logged and finite, on the built-in data and on a manifest of
//! real files; `eval` of an AVCL checkpoint; resume; `--method` on the
//! command line.

mod e2e_common;

use std::path::Path;
use std::process::Command;

use diccae_engine::device::Opened;
use diccae_engine::train::eval_checkpoint::evaluate_checkpoint;
use diccae_engine::train::trainer::train;
use e2e_common::{build_manifest, epoch_records, fresh_dir, opts, small, summary};
use serde_json::Value;

/// Every AVCL term of every epoch is present and finite.
fn assert_avcl_terms(out: &Path, epochs: usize) {
    let records = epoch_records(out);
    assert_eq!(records.len(), epochs);
    for r in &records {
        for key in ["loss", "l_selfcl", "l_ins", "l_cgra", "gate_mean"] {
            let v = r[key].as_f64();
            assert!(v.is_some_and(f64::is_finite), "{key} = {} in {r}", r[key]);
        }
        let gate = r["gate_mean"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&gate), "gate {gate}");
        assert!(r["l_cls"].is_null() && r["l_conf"].is_null(), "{r}");
    }
}

#[test]
fn avcl_on_built_in_data_writes_every_output() {
    let out = fresh_dir("avcl-builtin");
    let cfg = small(&["method=avcl", "train.epochs=3"]);
    train(&cfg, &opts(&out, None), &Opened::cpu()).unwrap();
    for f in [
        "config.toml",
        "metrics.jsonl",
        "summary.json",
        "report.md",
        "plots/losses.png",
        "plots/confusion.png",
        "checkpoints/latest",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let toml = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(toml.contains("method = \"avcl\"") && toml.contains("[avcl.augment]"));
    let s = summary(&out);
    assert_eq!(s["method"], "avcl");
    for path in [
        "/linear_probe/audio/top1",
        "/linear_probe/fused/top1",
        "/knn/fused/top1",
        "/random_init/linear_probe/fused/top1",
        "/retrieval/audio_to_video/r10",
        "/kmeans_nmi",
    ] {
        let v = s.pointer(path).unwrap_or_else(|| panic!("{path} missing"));
        assert!(v.as_f64().is_some_and(f64::is_finite), "{path} = {v}");
    }
    assert!(
        s.pointer("/clustering/epochs")
            .and_then(Value::as_array)
            .unwrap()
            .is_empty(),
        "AVCL ran a clustering round"
    );
    assert_avcl_terms(&out, 3);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Method **avcl**"), "{report}");

    // `eval` rebuilds the gated model from the stored configuration.
    let again =
        evaluate_checkpoint(&out, None, &[], &out.join("eval"), true, &Opened::cpu()).unwrap();
    assert_eq!(again.method, "avcl");
    let fused = s["linear_probe"]["fused"]["top1"].as_f64().unwrap();
    assert!((again.fused_top1().unwrap() - fused).abs() < 1e-9);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn avcl_on_a_manifest_of_real_files() {
    let root = fresh_dir("avcl-manifest");
    let manifest = build_manifest(&root.join("data"), 24);
    let out = root.join("run");
    train(
        &small(&["method=avcl"]),
        &opts(&out, Some(manifest)),
        &Opened::cpu(),
    )
    .unwrap();
    let s = summary(&out);
    assert_eq!(s["method"], "avcl");
    assert_eq!(s["skipped_clips"], 1);
    assert_eq!(s["train_clips"], 18);
    assert!(s["linear_probe"]["fused"]["top1"].as_f64().is_some());
    assert_avcl_terms(&out, 2);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn an_interrupted_avcl_run_resumes_to_the_same_result() {
    let full = fresh_dir("avcl-full");
    let cut = fresh_dir("avcl-cut");
    let cfg = small(&["method=avcl", "train.epochs=3"]);
    train(&cfg, &opts(&full, None), &Opened::cpu()).unwrap();
    train(&cfg, &opts(&cut, None), &Opened::cpu()).unwrap();
    // Make `cut` look killed after epoch 2: its latest checkpoint is epoch 2.
    let ckpts = cut.join("checkpoints");
    std::fs::remove_dir_all(ckpts.join("epoch-0003")).unwrap();
    std::fs::write(ckpts.join("latest"), "epoch-0002\n").unwrap();
    std::fs::remove_file(cut.join("summary.json")).unwrap();

    // Resume through the command line, with the run's own config.toml.
    let bin = env!("CARGO_BIN_EXE_diccae-engine");
    let out = Command::new(bin)
        .args(["train", "--out", cut.to_str().unwrap(), "--resume"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("resumed from") && stdout.contains("L_selfcl"),
        "{stdout}"
    );
    assert_avcl_terms(&cut, 3);
    let (a, b) = (epoch_records(&full), epoch_records(&cut));
    for key in ["loss", "l_selfcl", "l_ins", "l_cgra"] {
        assert_eq!(a[2][key], b[2][key], "epoch 3 {key} after resuming");
    }
    assert_eq!(
        summary(&full)["linear_probe"]["fused"]["top1"],
        summary(&cut)["linear_probe"]["fused"]["top1"]
    );
    for d in [full, cut] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn method_flag_selects_avcl_and_unknown_keys_are_rejected() {
    let bin = env!("CARGO_BIN_EXE_diccae-engine");
    let printed = Command::new(bin)
        .args(["train", "--method", "avcl", "--print-config"])
        .output()
        .unwrap();
    assert!(printed.status.success());
    let text = String::from_utf8_lossy(&printed.stdout);
    assert!(text.contains("method = \"avcl\""), "{text}");
    for bad in ["avcl.lambda_cgr=1", "avcl.augment.gian=0.1"] {
        let out = Command::new(bin)
            .args(["train", "--print-config", "--set", bad])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        let key = bad.split(['.', '=']).nth(1).unwrap();
        let last = bad.split('=').next().unwrap().rsplit('.').next().unwrap();
        assert!(err.contains(last) || err.contains(key), "{bad}: {err}");
    }
    let out = Command::new(bin)
        .args(["train", "--print-config", "--set", "avcl.selfcl_tau=0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("avcl.selfcl_tau"));
}
