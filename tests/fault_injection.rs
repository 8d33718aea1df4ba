//! Fault injection (`DICCAE_FAULT`, see `src/fault.rs`): the release binary
//! is killed at each stage of a checkpoint write and of the metrics log, and
//! hit by a full disk while writing a checkpoint, `metrics.jsonl` and each
//! report file. Every time the run must fail cleanly (or die), keep its last
//! complete checkpoint, and a `--resume` must finish with losses and results
//! identical to an uninterrupted run's.

mod e2e_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e_common::{fresh_dir, small};
use serde_json::Value;

const EPOCHS: u64 = 4;

/// The stages of a checkpoint write, in order, and whether the new
/// checkpoint is already the `latest` one when the fault strikes there.
const CHECKPOINT_STAGES: [(&str, bool); 6] = [
    ("write:tensors.safetensors", false),
    ("write:state.json", false),
    ("checkpoint:rename", false),
    ("write:latest", false),
    ("checkpoint:latest-rename", false),
    ("checkpoint:prune", true),
];

/// The files a finished run writes through `write_atomic` at its end.
const REPORT_FILES: [&str; 4] = ["summary.json", "report.md", "losses.png", "confusion.png"];

fn config_file(dir: &Path) -> PathBuf {
    let cfg = small(&[
        &format!("train.epochs={EPOCHS}"),
        "train.keep_checkpoints=2",
        // The gate opens by the deadline after epoch 2: the cluster terms
        // (and the cap) train in epochs 3 and 4.
        "diccae.warmup_epochs=0",
        "diccae.chance_gate=0.01",
        "diccae.gate_deadline=0.5",
        "diccae.min_size_entropy=0",
        "diccae.cluster_grad_ratio=0.5",
    ]);
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("start.toml");
    std::fs::write(&path, cfg.to_toml().unwrap()).unwrap();
    path
}

/// Runs `train` into `out` (fresh from `cfg`, or `--resume`), with `fault`
/// armed when given.
fn train(out: &Path, cfg: Option<&Path>, fault: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_diccae-engine"));
    cmd.args(["train", "--out"]).arg(out);
    match cfg {
        Some(c) => cmd.arg("--config").arg(c),
        None => cmd.arg("--resume"),
    };
    cmd.env_remove("DICCAE_FAULT");
    if let Some(f) = fault {
        cmd.env("DICCAE_FAULT", f);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `v` without its wall-clock fields, which differ from run to run.
fn without_times(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.contains("second"))
                .map(|(k, x)| (k.clone(), without_times(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_times).collect()),
        x => x.clone(),
    }
}

/// Every record of `metrics.jsonl` (times removed), and the summary.
fn outcome(out: &Path) -> (Vec<Value>, Value) {
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let records = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("{}: torn line {l:?}: {e}", out.display()))
        })
        .map(|v| without_times(&v))
        .collect();
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    (records, without_times(&summary))
}

fn latest(out: &Path) -> String {
    std::fs::read_to_string(out.join("checkpoints/latest"))
        .unwrap()
        .trim()
        .to_string()
}

/// Hidden leftovers of unfinished writes anywhere under `dir`.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains("tmp") {
            found.push(entry.path());
        } else if entry.path().is_dir() {
            found.extend(temporaries(&entry.path()));
        }
    }
    found
}

/// Resumes the damaged run in `out` and checks it ends exactly as `want`.
fn resume_matches(out: &Path, want: &(Vec<Value>, Value), what: &str) {
    let resumed = train(out, None, None);
    assert!(
        resumed.status.success(),
        "{what}: the resume failed: {}",
        stderr(&resumed)
    );
    let got = outcome(out);
    assert_eq!(got.0.len(), want.0.len(), "{what}: metrics.jsonl records");
    for (i, (g, w)) in got.0.iter().zip(&want.0).enumerate() {
        assert_eq!(g, w, "{what}: metrics.jsonl record {i} differs");
    }
    assert_eq!(got.1, want.1, "{what}: summary.json differs");
    assert_eq!(latest(out), format!("epoch-{EPOCHS:04}"), "{what}");
    assert!(
        temporaries(out).is_empty(),
        "{what}: leftovers {:?}",
        temporaries(out)
    );
}

fn reference(root: &Path) -> (Vec<Value>, Value) {
    let out = root.join("reference");
    let done = train(&out, Some(&config_file(root)), None);
    assert!(done.status.success(), "{}", stderr(&done));
    let want = outcome(&out);
    // The cluster terms train in the later epochs, so their state (the
    // prototypes, W, the gate) is part of what a resume must restore.
    let epochs: Vec<&Value> = want.0.iter().filter(|r| r["kind"] == "epoch").collect();
    assert_eq!(epochs.len() as u64, EPOCHS);
    assert!(
        epochs.last().unwrap()["record"]["l_cls"].is_number(),
        "the reference run never trained its cluster terms: {:?}",
        epochs.last()
    );
    want
}

/// Which pass of `write:metrics.jsonl` appends epoch `epoch`'s line: the
/// rewrite at start is the first, then one per record (cluster rounds too).
fn epoch_line_pass(want: &(Vec<Value>, Value), epoch: u64) -> usize {
    let i = want
        .0
        .iter()
        .position(|r| r["kind"] == "epoch" && r["record"]["epoch"] == epoch)
        .unwrap();
    i + 2
}

#[test]
fn a_kill_at_each_stage_of_a_checkpoint_write_resumes_exactly() {
    let root = fresh_dir("fault-kill");
    let want = reference(&root);
    let cfg = config_file(&root);
    for (stage, new_is_latest) in CHECKPOINT_STAGES {
        // The second checkpoint (epoch 2) is the one cut short.
        let out = root.join(stage.replace(':', "-"));
        let killed = train(&out, Some(&cfg), Some(&format!("{stage}@2:kill")));
        assert!(
            !killed.status.success() && killed.status.code().is_none(),
            "{stage}: the run was not killed: {:?} {}",
            killed.status,
            stderr(&killed)
        );
        let expect = if new_is_latest {
            "epoch-0002"
        } else {
            "epoch-0001"
        };
        assert_eq!(latest(&out), expect, "{stage}: latest after the kill");
        diccae_engine::checkpoint::load(&out.join("checkpoints"))
            .unwrap_or_else(|e| panic!("{stage}: the latest checkpoint does not load: {e}"));
        resume_matches(&out, &want, stage);
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_kill_while_appending_metrics_resumes_exactly() {
    let root = fresh_dir("fault-kill-metrics");
    let want = reference(&root);
    let out = root.join("run");
    let killed = train(
        &out,
        Some(&config_file(&root)),
        Some(&format!(
            "write:metrics.jsonl@{}:kill",
            epoch_line_pass(&want, 2)
        )),
    );
    assert!(killed.status.code().is_none(), "{:?}", killed.status);
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(
        serde_json::from_str::<Value>(text.lines().last().unwrap()).is_err(),
        "the kill did not tear the line: {text}"
    );
    resume_matches(&out, &want, "kill in metrics.jsonl");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_full_disk_fails_cleanly_and_the_run_resumes_exactly() {
    let root = fresh_dir("fault-enospc");
    let want = reference(&root);
    let cfg = config_file(&root);
    let mut cases: Vec<(String, String)> = vec![
        (
            "write:tensors.safetensors@2:enospc".into(),
            "tensors.safetensors".into(),
        ),
        ("write:state.json@3:enospc".into(), "state.json".into()),
        (
            format!("write:metrics.jsonl@{}:enospc", epoch_line_pass(&want, 2)),
            "metrics.jsonl".into(),
        ),
    ];
    cases.extend(
        REPORT_FILES
            .iter()
            .map(|f| (format!("write:{f}:enospc"), f.to_string())),
    );
    for (fault, file) in cases {
        let out = root.join(fault.replace([':', '@'], "-"));
        let failed = train(&out, Some(&cfg), Some(&fault));
        let err = stderr(&failed);
        assert_eq!(failed.status.code(), Some(1), "{fault}: {err}");
        assert!(
            err.contains(&file) && err.contains("No space left on device"),
            "{fault}: the error must name the file and the cause: {err}"
        );
        // Nothing torn is left where a reader would find it.
        assert!(
            temporaries(&out).is_empty(),
            "{fault}: leftovers {:?}",
            temporaries(&out)
        );
        if REPORT_FILES.contains(&file.as_str()) {
            // A fresh run's file cut short by the full disk is absent, never
            // torn: the reader sees no report rather than half of one.
            let dir = if file.ends_with(".png") { "plots" } else { "" };
            let target = out.join(dir).join(&file);
            assert!(
                !target.exists(),
                "{fault}: {} was left behind ({} bytes)",
                target.display(),
                std::fs::metadata(&target).map_or(0, |m| m.len())
            );
        }
        diccae_engine::checkpoint::load(&out.join("checkpoints"))
            .unwrap_or_else(|e| panic!("{fault}: the latest checkpoint does not load: {e}"));
        resume_matches(&out, &want, &fault);
    }
    let _ = std::fs::remove_dir_all(&root);
}
