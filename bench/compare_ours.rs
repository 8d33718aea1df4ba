//! Our half of `bench/compare`: runs one workload in this process and prints
//! one JSON line (the time of every repeat, their median, peak memory).
//!
//! ```text
//! bench_compare config            # the tiny preset as JSON (for bench/torch_model.py)
//! bench_compare check             # checks every workload against its reference
//! bench_compare WORKLOAD REPEATS  # gemm512 gemm1024 gemm4096 infonce attention
//!                                 # kmeans kmeans_small step
//! ```
//!
//! Memory: after the inputs are built, the process's peak resident size is
//! reset (`/proc/self/clear_refs`), so `extra_peak_bytes` is what the
//! workload itself added at its peak (Linux `VmHWM` minus the resident size
//! at the reset); the check runs in its own process so its reference
//! buffers never count.

#[path = "../benches/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{AttentionCase, GemmCase, InfoNceCase, KMeansCase, StepCase};
use diccae_engine::config::Config;
use serde_json::json;

/// `(fn, warm-up runs, FLOPs)` of a workload.
type Workload = (Box<dyn FnMut()>, usize, Option<f64>);

fn setup(name: &str, repeats: usize) -> Workload {
    match name {
        "gemm512" | "gemm1024" | "gemm4096" => {
            let n: usize = name[4..].parse().expect("size");
            let case = GemmCase::new(n, n, n);
            let flops = case.flops();
            let mut c = vec![0.0f32; n * n];
            (Box::new(move || case.run(&mut c)), 2, Some(flops))
        }
        "infonce" => {
            let case = InfoNceCase::new(4096, 256);
            let flops = case.fwd_bwd_flops();
            (
                Box::new(move || {
                    case.fwd_bwd(|l, _, _| l);
                }),
                1,
                Some(flops),
            )
        }
        "attention" => {
            let case = AttentionCase::new(32, 8, 256, 64);
            let flops = case.fwd_bwd_flops();
            // One copy of the output gradient per run, made before timing.
            let mut seeds: Vec<Vec<f32>> =
                (0..repeats + 1).map(|_| case.grad_out.clone()).collect();
            (
                Box::new(move || {
                    let seed = seeds.pop().expect("a seed per run");
                    case.fwd_bwd(seed, |o, _| o[0]);
                }),
                1,
                Some(flops),
            )
        }
        "kmeans" | "kmeans_small" => {
            let case = if name == "kmeans" {
                KMeansCase::new(100_000, 256, 100, 20)
            } else {
                KMeansCase::new(8192, 32, 16, 10)
            };
            let flops = case.flops();
            (
                Box::new(move || {
                    let r = case.run();
                    assert_eq!(r.iterations, case.iters, "k-means stopped early");
                }),
                1,
                Some(flops),
            )
        }
        "step" => {
            let mut case = StepCase::new(64);
            (
                Box::new(move || {
                    case.step(false);
                }),
                3,
                None,
            )
        }
        other => panic!("unknown workload {other}"),
    }
}

fn check() {
    for n in [1024, 4096] {
        GemmCase::new(n, n, n).check();
        println!("ok gemm {n}^3");
    }
    InfoNceCase::new(4096, 256).check();
    println!("ok infonce B4096 d256");
    AttentionCase::new(32, 8, 256, 64).check();
    println!("ok attention B32 H8 S256 D64");
    KMeansCase::new(100_000, 256, 100, 20).check();
    println!("ok kmeans 100k x 256 K100 20 iterations");
    StepCase::new(64).check();
    println!("ok tiny training step B64");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("config") => {
            let cfg = Config::preset("tiny").expect("tiny preset");
            println!("{}", serde_json::to_string(&cfg).expect("config as JSON"));
        }
        Some("check") => check(),
        Some(name) => {
            let repeats: usize = args
                .get(1)
                .and_then(|r| r.parse().ok())
                .expect("usage: bench_compare WORKLOAD REPEATS");
            let (mut f, warmup, flops) = setup(name, repeats);
            let reset = common::reset_peak_rss();
            let base = common::current_rss().unwrap_or(0);
            for _ in 0..warmup {
                f();
            }
            let mut times: Vec<f64> = (0..repeats)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .collect();
            let hwm = common::peak_rss().unwrap_or(0);
            let listed = times.clone();
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            println!(
                "{}",
                json!({
                    "impl": "ours",
                    "workload": name,
                    "times_s": listed,
                    "median_s": median,
                    "peak_rss_bytes": hwm,
                    "base_rss_bytes": base,
                    "extra_peak_bytes": hwm.saturating_sub(base),
                    "peak_reset": reset,
                    "threads": rayon::current_num_threads(),
                    "flops": flops,
                })
            );
        }
        None => {
            eprintln!("usage: bench_compare config | check | WORKLOAD REPEATS");
            std::process::exit(2);
        }
    }
}
