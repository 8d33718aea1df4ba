//! The performance regression gate (run by `scripts/perf-gate.sh`).
//!
//! A quick subset of the benchmarks (InfoNCE, a small attention, GEMM 512³,
//! a small k-means, LayerNorm), each checked against its reference first.
//! Every sample times one workload right after a calibration workload (fixed
//! compute and memory-streaming loops on every rayon thread, independent of
//! the engine's code) and keeps the ratio of the two times, so a machine that
//! is uniformly slower or busier cancels out. The median ratio over the
//! repeats is compared with the committed baseline (`bench/baseline.json`);
//! a workload whose ratio is more than 25% above its baseline is measured
//! again with twice the repeats (up to two more looks), and the gate fails
//! (exit 1, naming the workload and the ratio) only when it is still over.
//!
//! ```text
//! perf_gate [--baseline PATH] [--repeats N]      # compare (default)
//! perf_gate --slow all=1.3                      # compare, every workload injected 1.3x slower
//! perf_gate --slow gemm_512=1.3                 # ... or one workload
//! perf_gate --update-baseline [--baseline PATH] # the only way to rewrite it
//! ```
//!
//! `--slow NAME=F` (repeatable; `all` names every workload) is the
//! self-test's injected regression: each timed run of the workload is
//! followed, inside the timed region, by a spin of (F − 1) times that run's
//! own duration, so the workload really takes F times as long. It is
//! injected here, never in the product. The last lines of every run are one
//! `perf gate verdict: NAME RATIO over|within` per workload, which
//! `scripts/perf-gate.sh --self-test` and `scripts/perf-gate-rates.sh` read.

#[path = "../benches/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use common::{AttentionCase, GemmCase, InfoNceCase, KMeansCase, LayerNormCase};
use rayon::prelude::*;
use serde_json::{Value, json};

/// A normalised time more than this factor above its baseline fails.
const LIMIT: f64 = 1.25;
/// A sample runs its workload at least this long (repeating it if needed).
const MIN_SAMPLE_S: f64 = 0.2;

/// The calibration workload, independent of the engine's code: on every
/// rayon thread, a compute part (300 passes of a vectorised multiply-add over
/// 16k L1/L2-resident floats) and a memory part (one `y += a·x` pass over
/// 2M floats, 16 MB of traffic), so it slows down with both kinds of
/// contention a shared machine adds.
struct Calibration {
    bufs: Vec<(Vec<f32>, Vec<f32>)>,
}

impl Calibration {
    fn new() -> Self {
        let n = 1 << 21;
        Calibration {
            bufs: (0..rayon::current_num_threads())
                .map(|t| (vec![t as f32 * 1e-3; n], vec![0.0f32; n]))
                .collect(),
        }
    }

    fn run(&mut self) -> f32 {
        self.bufs
            .par_iter_mut()
            .map(|(x, y)| {
                let mut acc = vec![0.0f32; 16384];
                for _ in 0..300 {
                    for (a, &v) in acc.iter_mut().zip(black_box(&x[..16384])) {
                        *a = *a * 0.999 + v;
                    }
                }
                for (y, &x) in y.iter_mut().zip(black_box(&x[..])) {
                    *y += 0.5 * x;
                }
                black_box(&acc)[7] + black_box(&y)[11]
            })
            .sum()
    }
}

struct Workload {
    name: &'static str,
    run: Box<dyn FnMut()>,
}

/// The gate's subset, each checked against its reference before use.
fn workloads() -> Vec<Workload> {
    let infonce = InfoNceCase::new(2048, 256);
    infonce.check();
    let attention = AttentionCase::new(4, 8, 256, 64);
    attention.check();
    let gemm = GemmCase::new(512, 512, 512);
    gemm.check();
    let kmeans = KMeansCase::new(8192, 32, 16, 10);
    kmeans.check();
    let ln = LayerNormCase::new(4096, 256);
    ln.check();
    let mut c = vec![0.0f32; 512 * 512];
    vec![
        Workload {
            name: "infonce_fwd_bwd_B2048_d256",
            run: Box::new(move || {
                infonce.fwd_bwd(|l, _, _| black_box(l));
            }),
        },
        Workload {
            name: "attention_fwd_bwd_B4_H8_S256_D64",
            run: Box::new(move || {
                attention.fwd_bwd(attention.grad_out.clone(), |o, _| black_box(o[0]));
            }),
        },
        Workload {
            name: "gemm_512",
            run: Box::new(move || gemm.run(black_box(&mut c))),
        },
        Workload {
            name: "kmeans_8192x32_K16_10it",
            run: Box::new(move || {
                black_box(kmeans.run().inertia[0]);
            }),
        },
        Workload {
            name: "layer_norm_fwd_bwd_4096x256",
            run: Box::new(move || {
                ln.fwd_bwd(ln.grad_out.clone(), |v| black_box(v[0][0]));
            }),
        },
    ]
}

fn time(f: &mut dyn FnMut(), inner: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..inner {
        f();
    }
    t.elapsed().as_secs_f64() / inner as f64
}

/// How many runs make one sample of at least `MIN_SAMPLE_S`.
fn inner_count(f: &mut dyn FnMut()) -> usize {
    f();
    let once = time(f, 1).max(1e-6);
    ((MIN_SAMPLE_S / once).ceil() as usize).clamp(1, 10_000)
}

/// Median over `repeats` of (workload time / calibration time), with each
/// run of the workload stretched to `slow` times its duration (`slow = 1`:
/// as it is; above 1: the self-test's injected regression).
fn measure(w: &mut Workload, cal: &mut Calibration, repeats: usize, slow: f64) -> f64 {
    let mut cal = || {
        black_box(cal.run());
    };
    let mut run = || {
        let start = Instant::now();
        (w.run)();
        if slow > 1.0 {
            let until = start + start.elapsed().mul_f64(slow);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
    };
    let (ni, nc) = (inner_count(&mut run), inner_count(&mut cal));
    let mut ratios: Vec<f64> = (0..repeats)
        .map(|_| {
            let c = time(&mut cal, nc);
            let t = time(&mut run, ni);
            t / c
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

/// Workloads whose ratio to the baseline exceeds [`LIMIT`], or that the
/// baseline lacks: `(name, current / baseline)` (infinite when missing).
fn over(current: &BTreeMap<String, f64>, baseline: &BTreeMap<String, f64>) -> Vec<(String, f64)> {
    current
        .iter()
        .filter_map(|(name, &now)| match baseline.get(name) {
            Some(&base) if now / base <= LIMIT => None,
            Some(&base) => Some((name.clone(), now / base)),
            None => Some((name.clone(), f64::INFINITY)),
        })
        .collect()
}

fn read_baseline(path: &PathBuf) -> BTreeMap<String, f64> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        eprintln!(
            "perf gate: cannot read the baseline {}: {e}; create it with scripts/perf-gate.sh --update-baseline",
            path.display()
        );
        std::process::exit(2);
    });
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        eprintln!("perf gate: {} is not JSON: {e}", path.display());
        std::process::exit(2);
    });
    v["workloads"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x)))
                .collect()
        })
        .unwrap_or_default()
}

fn main() {
    let mut baseline_path = PathBuf::from("bench/baseline.json");
    let (mut update, mut repeats) = (false, 11usize);
    let mut slow: BTreeMap<String, f64> = BTreeMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--update-baseline" => update = true,
            "--slow" => {
                let spec = args.next().unwrap_or_default();
                let parsed = spec
                    .split_once('=')
                    .and_then(|(n, f)| f.parse::<f64>().ok().map(|f| (n.to_string(), f)))
                    .filter(|(_, f)| f.is_finite() && *f >= 1.0);
                let Some((name, factor)) = parsed else {
                    eprintln!("perf gate: --slow wants NAME=FACTOR (FACTOR >= 1), got {spec:?}");
                    std::process::exit(2);
                };
                slow.insert(name, factor);
            }
            "--baseline" => baseline_path = args.next().expect("--baseline PATH").into(),
            "--repeats" => {
                repeats = args
                    .next()
                    .and_then(|r| r.parse().ok())
                    .expect("--repeats N")
            }
            other => {
                eprintln!("perf gate: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let started = Instant::now();
    println!(
        "perf gate: {} threads, median of {repeats} samples, limit {LIMIT}x the baseline",
        rayon::current_num_threads()
    );
    let mut ws = workloads();
    if let Some(unknown) = slow
        .keys()
        .find(|n| *n != "all" && !ws.iter().any(|w| w.name == n.as_str()))
    {
        eprintln!("perf gate: --slow names no workload: {unknown}");
        std::process::exit(2);
    }
    let slow_of = |name: &str| slow.get(name).or(slow.get("all")).copied().unwrap_or(1.0);
    if update && !slow.is_empty() {
        eprintln!("perf gate: --slow cannot be used with --update-baseline");
        std::process::exit(2);
    }
    let mut cal = Calibration::new();
    let mut current = BTreeMap::new();
    for w in ws.iter_mut() {
        let f = slow_of(w.name);
        let r = measure(w, &mut cal, repeats, f);
        let injected = if f > 1.0 {
            format!("  (injected {f}x slower)")
        } else {
            String::new()
        };
        println!("  {:<36} {:>10.4} x calibration{injected}", w.name, r);
        current.insert(w.name.to_string(), r);
    }

    if update {
        let doc = json!({
            "about": "perf gate baseline: per workload, the median of its time divided by the calibration loop's time measured right before it. Rewrite only with scripts/perf-gate.sh --update-baseline.",
            "threads": rayon::current_num_threads(),
            "repeats": repeats,
            "limit": LIMIT,
            "workloads": current,
        });
        let text = serde_json::to_string_pretty(&doc).expect("JSON") + "\n";
        std::fs::write(&baseline_path, text).unwrap_or_else(|e| {
            eprintln!("perf gate: cannot write {}: {e}", baseline_path.display());
            std::process::exit(2);
        });
        println!("perf gate: wrote {}", baseline_path.display());
        return;
    }

    let baseline = read_baseline(&baseline_path);
    let mut fails = over(&current, &baseline);
    // Confirm before failing: a shared machine's noise rarely survives two
    // more, longer looks; a real regression does.
    for look in 2..=3 {
        if fails.is_empty() {
            break;
        }
        println!(
            "perf gate: re-measuring {} workload(s) over the limit",
            fails.len()
        );
        for w in ws
            .iter_mut()
            .filter(|w| fails.iter().any(|f| f.0 == w.name))
        {
            let r = measure(w, &mut cal, 2 * repeats, slow_of(w.name));
            println!("  {:<36} {:>10.4} x calibration (look {look})", w.name, r);
            current.insert(w.name.to_string(), r);
        }
        fails = over(&current, &baseline);
    }
    for (name, now) in &current {
        if let Some(base) = baseline.get(name) {
            println!("  {name:<36} {:>6.2}x baseline", now / base);
        }
    }
    println!("perf gate: {:.1} s", started.elapsed().as_secs_f64());
    for (name, now) in &current {
        let ratio = baseline.get(name).map_or(f64::INFINITY, |b| now / b);
        let verdict = if fails.iter().any(|f| &f.0 == name) {
            "over"
        } else {
            "within"
        };
        println!("perf gate verdict: {name} {ratio:.4} {verdict}");
    }
    if fails.is_empty() {
        println!("perf gate passed");
    } else {
        // Not the gate's verdict: scripts/perf-gate.sh judges the median of
        // three processes.
        for (name, ratio) in &fails {
            if ratio.is_finite() {
                eprintln!(
                    "perf gate: {name} is {ratio:.2}x its baseline in this process (limit {LIMIT}x)"
                );
            } else {
                eprintln!(
                    "perf gate: {name} has no baseline; run scripts/perf-gate.sh --update-baseline and commit bench/baseline.json"
                );
            }
        }
        std::process::exit(1);
    }
}
