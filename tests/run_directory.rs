//! A run directory is never lost or mixed: `train` refuses to write over a
//! run without `--overwrite`, a refused `--resume` changes nothing on disk,
//! a resume must use the run's own data, old checkpoints are pruned and
//! unfinished checkpoint writes are cleared.

mod e2e_common;

use std::collections::BTreeMap;
use std::path::Path;

use diccae_engine::device::Opened;
use diccae_engine::train::trainer::{TrainOptions, train};
use e2e_common::{build_manifest, epoch_records, fresh_dir, opts, small, summary};

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let key = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(key, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn resume_opts(out: &Path, data: Option<std::path::PathBuf>) -> TrainOptions {
    TrainOptions {
        resume: true,
        ..opts(out, data)
    }
}

#[test]
fn train_over_a_run_refuses_without_overwrite() {
    let out = fresh_dir("overwrite");
    let cfg = small(&["train.epochs=2"]);
    train(&cfg, &opts(&out, None), &Opened::cpu()).unwrap();
    let before = snapshot(&out);
    let err = train(&cfg, &opts(&out, None), &Opened::cpu())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("already holds a run")
            && err.contains("--resume")
            && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(
        snapshot(&out),
        before,
        "a refused run changed the directory"
    );

    let longer = small(&["train.epochs=3"]);
    let replace = TrainOptions {
        overwrite: true,
        ..opts(&out, None)
    };
    train(&longer, &replace, &Opened::cpu()).unwrap();
    let epochs: Vec<u64> = epoch_records(&out)
        .iter()
        .filter_map(|r| r["epoch"].as_u64())
        .collect();
    assert_eq!(epochs, [0, 1, 2], "only the new run's epochs are logged");
    assert_eq!(summary(&out)["epochs"], 3);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_refused_resume_changes_nothing_and_names_the_data() {
    let dir = fresh_dir("resume-data");
    let manifest = build_manifest(&dir.join("data"), 24);
    let out = dir.join("run");
    let cfg = small(&["train.epochs=2"]);
    train(&cfg, &opts(&out, Some(manifest.clone())), &Opened::cpu()).unwrap();
    let before = snapshot(&out);

    // Another configuration.
    let other = small(&["train.epochs=2", "train.lr=5e-4"]);
    let err = train(
        &other,
        &resume_opts(&out, Some(manifest.clone())),
        &Opened::cpu(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("configuration differs"), "{err}");
    assert_eq!(snapshot(&out), before, "config.toml or logs were rewritten");

    // No --data: the run trained on a manifest, not on the built-in data.
    let err = train(&cfg, &resume_opts(&out, None), &Opened::cpu())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--data") && err.contains("manifest.jsonl"),
        "{err}"
    );
    assert_eq!(snapshot(&out), before);

    // An edited manifest (one clip fewer).
    let text = std::fs::read_to_string(&manifest).unwrap();
    let edited = dir.join("data/edited.jsonl");
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&edited, lines[1..].join("\n") + "\n").unwrap();
    let err = train(&cfg, &resume_opts(&out, Some(edited)), &Opened::cpu())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is not the manifest this run trained on"),
        "{err}"
    );
    assert_eq!(snapshot(&out), before);

    // The run's own data and configuration resume (nothing left to train:
    // the final evaluation runs again).
    train(
        &cfg,
        &resume_opts(&out, Some(manifest.clone())),
        &Opened::cpu(),
    )
    .unwrap();

    // A run on the built-in data does not resume on a manifest.
    let builtin = dir.join("builtin");
    train(&cfg, &opts(&builtin, None), &Opened::cpu()).unwrap();
    let before = snapshot(&builtin);
    let err = train(&cfg, &resume_opts(&builtin, Some(manifest)), &Opened::cpu())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("built-in data") && err.contains("without --data"),
        "{err}"
    );
    assert_eq!(snapshot(&builtin), before);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn old_checkpoints_are_pruned_and_unfinished_writes_cleared() {
    let out = fresh_dir("prune");
    let cfg = small(&["train.epochs=4", "train.keep_checkpoints=2"]);
    train(&cfg, &opts(&out, None), &Opened::cpu()).unwrap();
    let ckpts = out.join("checkpoints");
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&ckpts), ["epoch-0003", "epoch-0004", "latest"]);
    // A write killed half-way leaves a temporary directory; the next start
    // removes it.
    let tmp = ckpts.join(".tmp-epoch-0005-4242");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("tensors.safetensors"), b"partial").unwrap();
    train(&cfg, &resume_opts(&out, None), &Opened::cpu()).unwrap();
    assert!(!tmp.exists(), "the unfinished write is still there");
    assert_eq!(names(&ckpts), ["epoch-0003", "epoch-0004", "latest"]);

    // keep_checkpoints = 0 keeps every epoch's checkpoint.
    let all = fresh_dir("prune-all");
    train(
        &small(&["train.epochs=3", "train.keep_checkpoints=0"]),
        &opts(&all, None),
        &Opened::cpu(),
    )
    .unwrap();
    assert_eq!(
        names(&all.join("checkpoints")),
        ["epoch-0001", "epoch-0002", "epoch-0003", "latest"]
    );
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&all);
}

#[test]
fn a_checkpoint_whose_state_disagrees_with_itself_is_refused() {
    use diccae_engine::checkpoint::{load, save};
    let out = fresh_dir("inconsistent");
    let cfg = small(&["train.epochs=2"]);
    train(&cfg, &opts(&out, None), &Opened::cpu()).unwrap();
    let ckpts = out.join("checkpoints");
    let good = load(&ckpts).unwrap();
    // Written through `save`, so the checksums hold and only the range
    // checks can catch these.
    for (path, value, expect) in [
        (
            "/run/epochs_done",
            serde_json::json!(1_000_000),
            "inconsistent",
        ),
        ("/run/steps_done", serde_json::json!(3), "inconsistent"),
        ("/adam_step", serde_json::Value::Null, "adam_step"),
    ] {
        let mut bad = good.clone();
        *bad.state.pointer_mut(path).unwrap() = value;
        save(&ckpts, "epoch-0002", &bad).unwrap();
        let err = train(&cfg, &resume_opts(&out, None), &Opened::cpu())
            .unwrap_err()
            .to_string();
        assert!(err.contains(expect), "{path}: {err}");
    }
    // epochs_done beyond the run's epochs, with a matching history.
    let mut long = good.clone();
    let history = long.state["run"]["history"].as_array().unwrap().clone();
    let mut more = history.clone();
    more.extend(history);
    long.state["run"]["history"] = serde_json::json!(more);
    long.state["run"]["epochs_done"] = serde_json::json!(4);
    save(&ckpts, "epoch-0002", &long).unwrap();
    let err = train(&cfg, &resume_opts(&out, None), &Opened::cpu())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("after epoch 4") && err.contains("2 epochs"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// Checkpoints written before the objectives were generic kept DICCAE's gate
/// epoch in the run state and logged every term of every method in each
/// epoch record (`null` where it did not train): such a run still resumes
/// to the result of the uninterrupted run.
#[test]
fn a_checkpoint_in_the_older_layout_resumes_to_the_same_result() {
    use diccae_engine::checkpoint::{load, save};
    let cfg = small(&[
        "train.epochs=4",
        "diccae.warmup_epochs=0",
        "diccae.gate_deadline=0.5",
        "diccae.min_size_entropy=0",
    ]);
    let whole = fresh_dir("old-layout-whole");
    train(&cfg, &opts(&whole, None), &Opened::cpu()).unwrap();
    let records = epoch_records(&whole);
    assert!(
        records[3]["l_cls"].is_number(),
        "the cluster terms must train before the stop: {records:?}"
    );

    let out = fresh_dir("old-layout");
    // Train the same run, then put the checkpoint after epoch 3 in the old
    // layout and resume from it.
    train(&cfg, &opts(&out, None), &Opened::cpu()).unwrap();
    let ckpts = out.join("checkpoints");
    let mut old = load(&ckpts.join("epoch-0003")).unwrap();
    let gate = old
        .state
        .as_object_mut()
        .unwrap()
        .remove("gate_epoch")
        .unwrap();
    assert!(gate.is_number(), "the gate opened by epoch 3: {gate}");
    old.state["run"]["gate_epoch"] = gate;
    for r in old.state["run"]["history"].as_array_mut().unwrap() {
        let r = r.as_object_mut().unwrap();
        for key in ["l_cls", "l_conf"] {
            r.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    std::fs::remove_dir_all(ckpts.join("epoch-0004")).unwrap();
    std::fs::remove_dir_all(ckpts.join("epoch-0003")).unwrap();
    save(&ckpts, "epoch-0003", &old).unwrap();
    train(&cfg, &resume_opts(&out, None), &Opened::cpu()).unwrap();
    let (mut a, mut b) = (summary(&whole), summary(&out));
    for s in [&mut a, &mut b] {
        s.as_object_mut().unwrap().remove("seconds");
    }
    assert_eq!(a, b, "resumed from the old layout");
    assert_eq!(
        epoch_records(&out)[3]["loss"],
        records[3]["loss"],
        "the last epoch's loss"
    );
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&whole);
}
