//! The host emulator itself: a correct kernel using shared memory, barriers,
//! shuffles, votes and atomics gives the right answer, and each fault it must
//! catch (issue 4, acceptance 2) is reported as an error, not a hang, a crash
//! or a silent pass.

use diccae_kernel_emu::{Arg, Dims, EmuErrorKind, launch};

fn dims(grid: u32, block: u32, shared_bytes: usize) -> Dims {
    Dims {
        grid: [grid, 1, 1],
        block: [block, 1, 1],
        shared_bytes,
    }
}

#[test]
#[allow(clippy::needless_range_loop)] // index arithmetic mirrors the kernel
fn correct_kernel_matches_the_definition() {
    let n: usize = 150;
    let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 11) as f32) - 5.0).collect();
    let blocks = n.div_ceil(64);
    let mut out = vec![0.0f32; n + blocks];
    launch(
        "emu_selftest_f32",
        dims(blocks as u32, 64, 64 * 4),
        &mut [Arg::In(&x), Arg::I32(n as i32), Arg::Out(&mut out)],
    )
    .unwrap();
    for b in 0..blocks {
        let lo = b * 64;
        let hi = (lo + 64).min(n);
        let total: f32 = x[lo..hi].iter().sum();
        for i in lo..hi {
            let j = lo + 63 - (i - lo);
            let rev = if j < n { x[j] } else { 0.0 };
            assert!(
                (out[i] - (rev + total)).abs() < 1e-4,
                "out[{i}] = {}",
                out[i]
            );
        }
        let positives = x[lo..hi].iter().filter(|&&v| v > 0.0).count();
        assert_eq!(out[n + b], positives as f32, "ballot count of block {b}");
    }
}

#[test]
fn barrier_in_a_divergent_branch_is_reported() {
    let mut out = vec![0.0f32; 64];
    let err = launch(
        "emu_fault_divergent_barrier",
        dims(1, 64, 0),
        &mut [Arg::Out(&mut out)],
    )
    .unwrap_err();
    assert_eq!(err.kind, EmuErrorKind::BarrierDivergence, "{err}");
    assert!(err.message.contains("faults.cu"), "{err}");
    assert!(err.message.contains("reached by 32 of 64 threads"), "{err}");
}

#[test]
fn barriers_at_different_sites_are_reported() {
    let mut out = vec![0.0f32; 64];
    let err = launch(
        "emu_fault_split_barrier",
        dims(1, 64, 0),
        &mut [Arg::Out(&mut out)],
    )
    .unwrap_err();
    assert_eq!(err.kind, EmuErrorKind::BarrierDivergence, "{err}");
    assert!(err.message.contains("different __syncthreads"), "{err}");
}

#[test]
fn write_past_the_end_is_reported() {
    // 3 blocks of 32 threads write 96 elements into a buffer of 80.
    let mut out = vec![0.0f32; 80];
    let err = launch(
        "emu_fault_write_past_end",
        dims(3, 32, 0),
        &mut [Arg::Out(&mut out)],
    )
    .unwrap_err();
    assert_eq!(err.kind, EmuErrorKind::OutOfBounds, "{err}");
    assert!(err.message.contains("index 80, length 80"), "{err}");
    assert!(err.message.contains("block (2,0,0)"), "{err}");
    assert!(err.message.contains("thread (16,0,0)"), "{err}");
}

#[test]
fn read_before_the_start_is_reported() {
    let x = vec![1.0f32; 32];
    let mut out = vec![0.0f32; 32];
    let err = launch(
        "emu_fault_read_before_start",
        dims(1, 32, 0),
        &mut [Arg::In(&x), Arg::Out(&mut out)],
    )
    .unwrap_err();
    assert_eq!(err.kind, EmuErrorKind::OutOfBounds, "{err}");
    assert!(err.message.contains("index -1"), "{err}");
}

#[test]
fn dynamic_shared_memory_overflow_is_reported() {
    let mut out = vec![0.0f32; 64];
    // 64 threads, shared memory for 40 floats.
    let err = launch(
        "emu_fault_shared_overflow",
        dims(1, 64, 40 * 4),
        &mut [Arg::Out(&mut out)],
    )
    .unwrap_err();
    assert_eq!(err.kind, EmuErrorKind::OutOfBounds, "{err}");
    assert!(err.message.contains("dynamic shared memory"), "{err}");
}

#[test]
fn divergent_full_mask_shuffle_is_reported() {
    let mut out = vec![0.0f32; 32];
    let err = launch(
        "emu_fault_divergent_shuffle",
        dims(1, 32, 0),
        &mut [Arg::Out(&mut out)],
    )
    .unwrap_err();
    assert_eq!(err.kind, EmuErrorKind::WarpDivergence, "{err}");
}

#[test]
fn bad_launches_and_arguments_are_reported() {
    let mut out = vec![0.0f32; 64];
    let err = launch("no_such_kernel", dims(1, 32, 0), &mut []).unwrap_err();
    assert_eq!(err.kind, EmuErrorKind::UnknownKernel);
    let err = launch(
        "emu_fault_write_past_end",
        dims(1, 2048, 0),
        &mut [Arg::Out(&mut out)],
    )
    .unwrap_err();
    assert_eq!(err.kind, EmuErrorKind::BadLaunch, "{err}");
    let x = vec![0.0f32; 4];
    let err = launch(
        "emu_fault_write_past_end",
        dims(1, 32, 0),
        &mut [Arg::In(&x)],
    )
    .unwrap_err();
    assert_eq!(err.kind, EmuErrorKind::BadArguments, "{err}");
    let err = launch("emu_fault_write_past_end", dims(1, 32, 0), &mut []).unwrap_err();
    assert_eq!(err.kind, EmuErrorKind::BadArguments, "{err}");
}

#[test]
fn registry_lists_the_test_kernels() {
    let names = diccae_kernel_emu::kernel_names();
    assert!(names.iter().any(|n| n == "emu_selftest_f32"), "{names:?}");
}
