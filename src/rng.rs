//! Seeded random numbers: every random choice in the engine comes from a
//! [`SeededRng`] so a run is reproducible from its seed.

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// The engine's RNG: ChaCha8, fast and identical on every platform.
pub type SeededRng = rand_chacha::ChaCha8Rng;

/// An RNG from a seed.
pub fn seeded(seed: u64) -> SeededRng {
    SeededRng::seed_from_u64(seed)
}

/// `n` samples from N(0, std²).
pub fn normal_vec(rng: &mut SeededRng, n: usize, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let z: f32 = StandardNormal.sample(rng);
            z * std
        })
        .collect()
}

/// `n` samples from U[lo, hi).
pub fn uniform_vec(rng: &mut SeededRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}
