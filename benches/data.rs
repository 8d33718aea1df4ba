//! Data benchmarks: log-mel extraction of a batch of clips (clips/s) and
//! gathering a training batch from the built-in synthetic dataset (GB/s);
//! each checked (see `common`) before it is timed.

mod common;

use std::time::Duration;

use common::{GatherCase, LogMelCase};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use diccae_engine::data::LogMel;

fn data(c: &mut Criterion) {
    let mut g = c.benchmark_group("data");
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    // 256 clips of the tiny preset's 96 frames (0.975 s at 16 kHz), 64 mels.
    let clips = 256;
    let lm = LogMelCase::new(clips, LogMel::samples_for_frames(96), 64);
    lm.check();
    g.throughput(Throughput::Elements(clips as u64));
    g.bench_function("logmel_clips/256x96frames_64mels", |b| b.iter(|| lm.run()));

    let gather = GatherCase::new(64);
    gather.check();
    g.throughput(Throughput::Bytes(gather.batch_bytes()));
    g.bench_function("gather_batch_bytes/tiny_B64", |b| b.iter(|| gather.run()));
    g.finish();
}

criterion_group!(benches, data);
criterion_main!(benches);
