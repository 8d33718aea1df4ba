//! Kernel benchmarks: fused InfoNCE, attention and class alignment (forward
//! and backward), GEMM through `MatmulKernels`, LayerNorm and GELU. Each
//! workload is checked against its reference (see `common`) before it is
//! timed; GFLOP/s use the algorithmic FLOP counts printed with each group.

mod common;

use std::time::Duration;

use common::{AttentionCase, ClassAlignCase, GeluCase, GemmCase, InfoNceCase, LayerNormCase};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Prints the GFLOP/s of one run of `f` (the median of 3) next to criterion's time.
fn print_gflops(name: &str, flops: f64, mut f: impl FnMut()) {
    let mut t: Vec<f64> = (0..3)
        .map(|_| {
            let s = std::time::Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    println!(
        "{name}: {:.1} GFLOP/s ({:.3} ms, {:.3e} FLOP)",
        flops / t[1] / 1e9,
        t[1] * 1e3,
        flops
    );
}

fn gemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for n in [512, 1024] {
        let case = GemmCase::new(n, n, n);
        case.check();
        let mut out = vec![0.0f32; n * n];
        print_gflops(&format!("gemm {n}^3"), case.flops(), || case.run(&mut out));
        g.throughput(Throughput::Elements(case.flops() as u64));
        g.bench_function(BenchmarkId::new("f32_flops", format!("{n}^3")), |b| {
            b.iter(|| case.run(&mut out))
        });
    }
    g.finish();
}

fn infonce(c: &mut Criterion) {
    let mut g = c.benchmark_group("infonce");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    let case = InfoNceCase::new(4096, 256);
    case.check();
    print_gflops("infonce fwd B4096 d256", case.fwd_flops(), || {
        case.fwd();
    });
    print_gflops("infonce fwd+bwd B4096 d256", case.fwd_bwd_flops(), || {
        case.fwd_bwd(|_, _, _| ())
    });
    g.throughput(Throughput::Elements(4096));
    g.bench_function("fwd_pairs/B4096_d256", |b| b.iter(|| case.fwd()));
    g.bench_function("fwd_bwd_pairs/B4096_d256", |b| {
        b.iter(|| case.fwd_bwd(|l, _, _| l))
    });
    g.finish();
}

fn attention(c: &mut Criterion) {
    let mut g = c.benchmark_group("attention");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    let case = AttentionCase::new(32, 8, 256, 64);
    case.check();
    print_gflops("attention fwd B32 H8 S256 D64", case.fwd_flops(), || {
        case.fwd();
    });
    print_gflops(
        "attention fwd+bwd B32 H8 S256 D64",
        case.fwd_bwd_flops(),
        || case.fwd_bwd(case.grad_out.clone(), |_, _| ()),
    );
    let tokens = (case.b * case.s) as u64;
    g.throughput(Throughput::Elements(tokens));
    g.bench_function("fwd_tokens/B32_H8_S256_D64", |b| b.iter(|| case.fwd()));
    g.bench_function("fwd_bwd_tokens/B32_H8_S256_D64", |b| {
        b.iter_batched(
            || case.grad_out.clone(),
            |seed| case.fwd_bwd(seed, |o, _| o[0]),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn class_align(c: &mut Criterion) {
    let mut g = c.benchmark_group("class_align");
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    // The tiny training step's size, and a large batch with K = 100.
    for (n, k, d) in [(64, 10, 128), (8192, 100, 256)] {
        let case = ClassAlignCase::new(n, k, d);
        case.check();
        print_gflops(
            &format!("class_align fwd+bwd N{n} K{k} d{d}"),
            case.fwd_bwd_flops(),
            || case.fwd_bwd(|_, _, _| ()),
        );
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(
            BenchmarkId::new("fwd_bwd_rows", format!("N{n}_K{k}_d{d}")),
            |b| b.iter(|| case.fwd_bwd(|l, _, _| l)),
        );
    }
    g.finish();
}

fn norm_gelu(c: &mut Criterion) {
    let mut g = c.benchmark_group("elementwise");
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    let ln = LayerNormCase::new(16384, 256);
    ln.check();
    g.throughput(Throughput::Bytes(ln.fwd_bwd_bytes()));
    g.bench_function("layer_norm_fwd_bwd_bytes/16384x256", |b| {
        b.iter_batched(
            || ln.grad_out.clone(),
            |seed| ln.fwd_bwd(seed, |v| v[0][0]),
            BatchSize::LargeInput,
        )
    });
    let ge = GeluCase::new(16384 * 256);
    ge.check();
    g.throughput(Throughput::Bytes(ge.fwd_bwd_bytes()));
    g.bench_function("gelu_fwd_bwd_bytes/4194304", |b| {
        b.iter_batched(
            || ge.grad_out.clone(),
            |seed| ge.fwd_bwd(seed, |y, _| y[0]),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, gemm, infonce, attention, class_align, norm_gelu);
criterion_main!(benches);
