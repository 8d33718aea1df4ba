//! k-means benchmarks: 100k × 256 points, K = 100, 20 Lloyd iterations over
//! all points, and a small problem; each checked (see `common::KMeansCase`)
//! before it is timed.

mod common;

use std::time::Duration;

use common::KMeansCase;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn kmeans(c: &mut Criterion) {
    let mut g = c.benchmark_group("kmeans");
    for (n, d, k, iters, secs) in [(8192, 32, 16, 10, 2), (100_000, 256, 100, 20, 15)] {
        let case = KMeansCase::new(n, d, k, iters);
        case.check();
        let s = std::time::Instant::now();
        case.run();
        let t = s.elapsed().as_secs_f64();
        println!(
            "kmeans N{n} d{d} K{k} {iters} it: {:.1} GFLOP/s in the assignment products ({:.3} s)",
            case.flops() / t / 1e9,
            t
        );
        g.sample_size(10)
            .measurement_time(Duration::from_secs(secs));
        // Point-iterations per second.
        g.throughput(Throughput::Elements((n * iters) as u64));
        g.bench_function(format!("N{n}_d{d}_K{k}_{iters}it"), |b| {
            b.iter(|| case.run())
        });
    }
    g.finish();
}

criterion_group!(benches, kmeans);
criterion_main!(benches);
