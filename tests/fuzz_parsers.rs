//! Mutation fuzzing of every parser of untrusted input, on stable Rust and
//! with a fixed budget: WAV, manifest (JSON lines), frame images (PNG and
//! JPEG), configuration TOML and checkpoint `state.json`.
//!
//! Each case takes a valid input and applies 1–4 random mutations (bit
//! flips, truncation, inserted or deleted bytes, a repeated chunk, a 4-byte
//! field set to 0, 2³¹ − 1 or 2³² − 1 at an aligned offset, half of them in
//! the first 64 bytes, where headers keep sizes and rates). The parser must return `Ok` or an error;
//! a panic fails the test with the case's seed (`DICCAE_FUZZ_SEED=… cargo
//! test --test fuzz_parsers` replays a run). The allocator of this test
//! binary refuses any single allocation above `MAX_ALLOCATION` (the
//! process then aborts and the test fails), so no input may size a buffer
//! from a header beyond it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use diccae_engine::checkpoint::{Checkpoint, HostTensor, load, save};
use diccae_engine::config::Config;
use diccae_engine::data::audio::load_wav;
use diccae_engine::data::frames::load_frame;
use diccae_engine::data::manifest::Manifest;
use diccae_engine::rng::{SeededRng, seeded};
use rand::Rng;

/// The largest single allocation any parser may make (stated in
/// docs/RELIABILITY.md).
const MAX_ALLOCATION: usize = 512 << 20;

struct Capped;

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOCATION {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

fn base_seed() -> u64 {
    std::env::var("DICCAE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("diccae-fuzz-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `input` with 1–4 random mutations.
fn mutate(input: &[u8], rng: &mut SeededRng) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = b.len();
        match rng.random_range(0..6) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => b.truncate(rng.random_range(0..len)),
            2 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                b.splice(i..i, bytes);
            }
            3 if len > 1 => {
                let i = rng.random_range(0..len - 1);
                let n = rng.random_range(1..=(len - i).min(64));
                b.drain(i..i + n);
            }
            4 if len > 1 => {
                let i = rng.random_range(0..len - 1);
                let n = rng.random_range(1..=(len - i).min(256));
                let chunk = b[i..i + n].to_vec();
                b.splice(i..i, chunk);
            }
            _ if len >= 4 => {
                // Half of these land in the first 64 bytes, where headers are.
                let fields = if rng.random_bool(0.5) {
                    (len / 4).min(16)
                } else {
                    len / 4
                };
                let i = rng.random_range(0..fields) * 4;
                let v: u32 = [0, i32::MAX as u32, u32::MAX][rng.random_range(0..3)];
                b[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            _ => b.push(rng.random()),
        }
    }
    b
}

/// A mutation that knows the input's structure, applied before the blind
/// ones (for header fields that must agree with each other to get past the
/// first check).
type Structured = fn(&mut [u8], &mut SeededRng);

/// No structured mutation.
fn blind(_: &mut [u8], _: &mut SeededRng) {}

/// Half the cases: a canonical WAV header's sample rate (bytes 24..28) set
/// to an extreme or random value, with the byte rate (28..32) kept
/// consistent, so the rate reaches the engine's own checks.
fn wav_rate(b: &mut [u8], rng: &mut SeededRng) {
    if b.len() < 44 || rng.random_bool(0.5) {
        return;
    }
    let rate: u32 = match rng.random_range(0..6) {
        0 => 1,
        1 => 999,
        2 => 384_001,
        3 => i32::MAX as u32,
        4 => u32::MAX,
        _ => rng.random(),
    };
    let block = u32::from(u16::from_le_bytes([b[32], b[33]]));
    b[24..28].copy_from_slice(&rate.to_le_bytes());
    b[28..32].copy_from_slice(&rate.wrapping_mul(block).to_le_bytes());
}

/// Runs `cases` mutated copies of `valid` through `parse` (which reads the
/// bytes at the path it is given); returns how many parsed.
fn fuzz(
    name: &str,
    valid: &[u8],
    cases: usize,
    structured: Structured,
    parse: impl Fn(&Path) -> bool,
) -> usize {
    let dir = scratch(name);
    let file = dir.join("input");
    let seed = base_seed();
    let mut ok = 0;
    for case in 0..cases {
        let mut rng = seeded(seed ^ (case as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut bytes = valid.to_vec();
        structured(&mut bytes, &mut rng);
        let bytes = if rng.random_bool(0.5) {
            mutate(&bytes, &mut rng)
        } else {
            bytes
        };
        std::fs::write(&file, &bytes).unwrap();
        match catch_unwind(AssertUnwindSafe(|| parse(&file))) {
            Ok(true) => ok += 1,
            Ok(false) => {}
            Err(_) => panic!(
                "{name}: case {case} panicked (DICCAE_FUZZ_SEED={seed}); input kept at {}",
                file.display()
            ),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    ok
}

fn wav_bytes() -> Vec<u8> {
    let dir = scratch("wav-seed");
    let p = dir.join("a.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&p, spec).unwrap();
    for i in 0..1_600 {
        let v = ((i as f32 * 0.07).sin() * 9_000.0) as i16;
        w.write_sample(v).unwrap();
        w.write_sample(-v).unwrap();
    }
    w.finalize().unwrap();
    let b = std::fs::read(&p).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    b
}

#[test]
fn wav_inputs_never_panic() {
    let valid = wav_bytes();
    assert!(
        load_wav({
            let d = scratch("wav-check");
            let p = d.join("a.wav");
            std::fs::write(&p, &valid).unwrap();
            p
        })
        .is_ok()
    );
    let ok = fuzz("wav", &valid, 1_500, wav_rate, |p| load_wav(p).is_ok());
    assert!(
        ok < 1_500,
        "no mutation was refused: the harness mutates nothing"
    );
}

fn image_bytes(format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(24, 18, |x, y| image::Rgb([x as u8 * 9, y as u8 * 13, 77]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

#[test]
fn frame_images_never_panic() {
    for (name, format) in [
        ("png", image::ImageFormat::Png),
        ("jpeg", image::ImageFormat::Jpeg),
    ] {
        let valid = image_bytes(format);
        let ok = fuzz(name, &valid, 600, blind, |p| load_frame(p, 16).is_ok());
        assert!(ok < 600, "{name}: no mutation was refused");
    }
}

#[test]
fn manifests_never_panic() {
    let lines = [
        r#"{"id": "a", "audio": "a.wav", "frames": "fa/", "label": "dog", "split": "train"}"#,
        r#"{"id": "b", "audio": "b.wav", "frames": ["b0.png", "b1.png"], "label": "cat"}"#,
        r#"{"id": "c", "audio": "c.wav", "frames": "fc/", "split": "test"}"#,
    ];
    let valid = (lines.join("\n") + "\n").into_bytes();
    let ok = fuzz("manifest", &valid, 1_500, blind, |p| {
        Manifest::load(p).is_ok()
    });
    assert!(ok < 1_500, "no mutation was refused");
}

#[test]
fn configurations_never_panic() {
    let valid = Config::preset("tiny")
        .unwrap()
        .to_toml()
        .unwrap()
        .into_bytes();
    let ok = fuzz("config", &valid, 1_500, blind, |p| {
        let text = String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
        Config::from_toml(&text).is_ok()
    });
    assert!(ok < 1_500, "no mutation was refused");
}

#[test]
fn checkpoint_states_never_panic() {
    let dir = scratch("ckpt-seed");
    let mut tensors = std::collections::BTreeMap::new();
    tensors.insert(
        "w".to_string(),
        HostTensor {
            shape: vec![2, 3],
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        },
    );
    let ckpt = Checkpoint {
        tensors,
        state: serde_json::json!({ "run": { "epochs_done": 3 }, "config": "x", "adam_step": 12 }),
    };
    let at = save(&dir, "epoch-0003", &ckpt).unwrap();
    let state = std::fs::read(at.join("state.json")).unwrap();
    let tensors_file = std::fs::read(at.join("tensors.safetensors")).unwrap();
    // Mutated state.json beside intact tensors, then mutated tensors beside
    // an intact state.
    let ok = fuzz("state", &state, 800, blind, |p| {
        std::fs::copy(p, at.join("state.json")).unwrap();
        load(&at).is_ok()
    });
    assert!(ok < 800, "no mutated state was refused");
    std::fs::write(at.join("state.json"), &state).unwrap();
    let ok = fuzz("tensors", &tensors_file, 800, blind, |p| {
        std::fs::copy(p, at.join("tensors.safetensors")).unwrap();
        load(&at).is_ok()
    });
    assert!(ok < 800, "no mutated tensor file was refused");
    let _ = std::fs::remove_dir_all(&dir);
}
