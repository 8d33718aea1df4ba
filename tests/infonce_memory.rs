//! Acceptance: the fused InfoNCE forward + backward at B = 16384, d = 256
//! needs far less memory than the 1 GiB an explicit B×B logit matrix would.
//! A counting global allocator measures the peak above the inputs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use diccae_engine::autograd::{ParamStore, Tape};
use diccae_engine::backend::cpu::CpuBackend;
use diccae_engine::gradcheck::test_seed;
use diccae_engine::ops::infonce::infonce;
use diccae_engine::rng::{normal_vec, seeded};
use diccae_engine::tensor::Tensor;

/// The system allocator, counting live bytes and their peak.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let now = CURRENT.fetch_add(size, Ordering::SeqCst) + size;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

// SAFETY: every call forwards to `System` with the caller's layout; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::SeqCst);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MIB: usize = 1 << 20;

#[test]
fn infonce_at_16k_pairs_stays_under_64_mib() {
    let (b, d, tau) = (16384, 256, 1.0f32);
    let seed = test_seed();
    let mut rng = seeded(seed);
    let be = CpuBackend::new();
    // Warm rayon's pool so its thread stacks and queues are not counted.
    rayon::join(|| (), || ());
    let store = ParamStore::new(be.clone());
    let mut tape = Tape::new(&store);
    // Unit rows: `za·zv/τ` is ~N(0, 1/d), so each log-sum-exp is close to
    // ln B + 1/(2d) and the loss to ln B + 1/(2d) − mean(za_i·zv_i) ≈ ln B.
    let mut unit = |n: usize| {
        let mut v = normal_vec(&mut rng, n * d, 1.0);
        for row in v.chunks_exact_mut(d) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
        v
    };
    let za = tape.leaf(Tensor::from_host(&be, &[b, d], &unit(b)).unwrap());
    let zv = tape.leaf(Tensor::from_host(&be, &[b, d], &unit(b)).unwrap());

    let baseline = CURRENT.load(Ordering::SeqCst);
    PEAK.store(baseline, Ordering::SeqCst);
    let start = Instant::now();
    let loss = infonce(&mut tape, za, zv, tau).unwrap();
    let fwd = start.elapsed();
    let grads = tape.backward(loss).unwrap();
    let total = start.elapsed();
    let extra = PEAK.load(Ordering::SeqCst) - baseline;

    let value = tape.value(loss).buf()[0];
    let expect = (b as f32).ln() + 0.5 / d as f32;
    eprintln!(
        "infonce B={b} d={d}: loss {value} (expected ≈ {expect}), peak extra {:.1} MiB, \
         forward {:.2?}, forward+backward {:.2?} (seed {seed})",
        extra as f64 / MIB as f64,
        fwd,
        total
    );
    assert!(
        value.is_finite() && (value - expect).abs() < 5e-3,
        "loss {value}, expected ≈ {expect} (seed {seed})"
    );
    let ga = grads.var(za).unwrap();
    let gv = grads.var(zv).unwrap();
    assert!(ga.iter().chain(gv).all(|g| g.is_finite()));
    assert!(
        extra < 64 * MIB,
        "peak extra memory {extra} bytes is not under 64 MiB"
    );
}
