//! One full `tiny` training step on a batch of 64 (forward, InfoNCE, both
//! class-alignment terms, backward, clipping, AdamW), checked (see
//! `common::StepCase`) before it is timed.

mod common;

use std::time::Duration;

use common::StepCase;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn step(c: &mut Criterion) {
    StepCase::new(64).check();
    let mut case = StepCase::new(64);
    let mut g = c.benchmark_group("train_step");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Elements(64));
    g.bench_function("tiny_clips/B64", |b| b.iter(|| case.step(false).loss));
    g.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
