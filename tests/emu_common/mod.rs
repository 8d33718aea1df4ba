//! Helpers of the emulated kernel tests (`tests/emulated_*.rs`): launch
//! geometry, seeded inputs and comparison with the CPU backend.

#![allow(dead_code)] // each test file uses a subset

use diccae_engine::gradcheck::{all_close, test_seed};
use diccae_engine::rng::{SeededRng, normal_vec, seeded};
pub use diccae_kernel_emu::{Arg, Dims, launch};

/// A 1-D grid of `blocks` blocks of `threads` threads.
pub fn dims(blocks: usize, threads: u32, shared_bytes: usize) -> Dims {
    dims3([blocks, 1, 1], threads, shared_bytes)
}

/// A 3-D grid of 1-D blocks.
pub fn dims3(grid: [usize; 3], threads: u32, shared_bytes: usize) -> Dims {
    Dims {
        grid: grid.map(|g| u32::try_from(g).expect("grid fits u32")),
        block: [threads, 1, 1],
        shared_bytes,
    }
}

/// A seeded generator; the seed is printed so a failure can be replayed
/// with `DICCAE_TEST_SEED`.
pub fn rng(test: &str) -> SeededRng {
    let seed = test_seed();
    eprintln!("{test}: DICCAE_TEST_SEED={seed}");
    seeded(seed)
}

/// `n·d` normal values, each row scaled to unit length.
pub fn unit_rows(rng: &mut SeededRng, n: usize, d: usize) -> Vec<f32> {
    let mut v = normal_vec(rng, n * d, 1.0);
    for row in v.chunks_exact_mut(d) {
        let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        row.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Panics naming `what` and the shape when `got` and `want` differ by more
/// than `atol + rtol·|want|` anywhere.
pub fn assert_close(what: &str, shape: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    if let Err(e) = all_close(got, want, rtol, atol) {
        panic!("{what} at {shape}: emulated kernel vs CPU backend: {e}");
    }
}
