//! Property tests of every parser of untrusted input, with `proptest` on
//! stable Rust and a fixed budget: WAV, manifest (JSON lines), frame images
//! (PNG and JPEG), configuration TOML and checkpoint `state.json` and
//! tensors.
//!
//! Each case takes a valid input and applies 0–4 mutations drawn by
//! proptest (bit flips, truncation, inserted or deleted bytes, a repeated
//! chunk, a 4-byte field set to 0, 2³¹ − 1 or 2³² − 1 at an aligned offset,
//! half of them in the first 64 bytes, where headers keep sizes and rates).
//! The property: the parser returns `Ok` or an error. A panic fails the test
//! and proptest shrinks it to the smallest list of mutations that still
//! panics, printed with the failure. The seed is fixed
//! (`DICCAE_FUZZ_SEED=… cargo test --test fuzz_parsers` explores another).
//! The allocator of this test binary refuses any single allocation above
//! `MAX_ALLOCATION` (the process then aborts and the test fails), so no
//! input may size a buffer from a header beyond it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use diccae_engine::checkpoint::{Checkpoint, HostTensor, load, save};
use diccae_engine::config::Config;
use diccae_engine::data::audio::load_wav;
use diccae_engine::data::frames::load_frame;
use diccae_engine::data::manifest::Manifest;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as RunnerConfig, RngSeed, TestRunner};

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

/// One byte-level mutation; positions are fractions of the input's length
/// at the time it is applied.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    RepeatChunk(Index, usize),
    /// A 4-byte field set to `value`; `in_header` keeps it in the first 64 bytes.
    Field {
        at: Index,
        in_header: bool,
        value: u32,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1usize..=64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), 1usize..=256).prop_map(|(i, n)| Mutation::RepeatChunk(i, n)),
        (
            any::<Index>(),
            any::<bool>(),
            prop::sample::select(vec![0, i32::MAX as u32, u32::MAX])
        )
            .prop_map(|(at, in_header, value)| Mutation::Field {
                at,
                in_header,
                value
            }),
    ]
}

/// `input` with `mutations` applied in order.
fn mutate(input: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = input.to_vec();
    for m in mutations {
        let len = b.len();
        match m {
            Mutation::FlipBit(i, bit) if len > 0 => b[i.index(len)] ^= 1 << bit,
            Mutation::Truncate(i) if len > 0 => b.truncate(i.index(len)),
            Mutation::Insert(i, bytes) => {
                let at = i.index(len + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete(i, n) if len > 1 => {
                let at = i.index(len - 1);
                b.drain(at..at + (*n).min(len - at));
            }
            Mutation::RepeatChunk(i, n) if len > 1 => {
                let at = i.index(len - 1);
                let chunk = b[at..at + (*n).min(len - at)].to_vec();
                b.splice(at..at, chunk);
            }
            Mutation::Field {
                at,
                in_header,
                value,
            } if len >= 4 => {
                let fields = if *in_header {
                    (len / 4).min(16)
                } else {
                    len / 4
                };
                let i = at.index(fields) * 4;
                b[i..i + 4].copy_from_slice(&value.to_le_bytes());
            }
            _ => {}
        }
    }
    b
}

/// A mutation that knows the input's structure, applied before the blind
/// ones (header fields that must agree with each other to get past the
/// first check), given a value drawn for it.
type Structured = fn(&mut [u8], u32);

/// A canonical WAV header's sample rate (bytes 24..28) set to `rate`, with
/// the byte rate (28..32) kept consistent, so the rate reaches the engine's
/// own checks.
fn wav_rate(b: &mut [u8], rate: u32) {
    if b.len() < 44 {
        return;
    }
    let block = u32::from(u16::from_le_bytes([b[32], b[33]]));
    b[24..28].copy_from_slice(&rate.to_le_bytes());
    b[28..32].copy_from_slice(&rate.wrapping_mul(block).to_le_bytes());
}

/// The sample rates [`wav_rate`] tries: the edges of the accepted range,
/// 2³¹ − 1, 2³² − 1 and random values.
fn extreme_rate() -> BoxedStrategy<u32> {
    prop_oneof![
        prop::sample::select(vec![1, 999, 384_001, i32::MAX as u32, u32::MAX]),
        any::<u32>(),
    ]
    .boxed()
}

/// Runs `cases` proptest cases over `valid` (optionally first changed by
/// `structured` with a value from `values`, in half the cases) through
/// `parse`, which reads the bytes at the path it is given; returns how many
/// cases parsed. A panic fails with proptest's minimal failing case.
fn fuzz(
    name: &str,
    valid: &[u8],
    cases: u32,
    structured: Option<(Structured, BoxedStrategy<u32>)>,
    parse: impl Fn(&Path) -> bool,
) -> usize {
    let dir = scratch(name);
    let file = dir.join("input");
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(base_seed()),
        ..RunnerConfig::default()
    });
    let (apply, values) = match structured {
        Some((f, v)) => (Some(f), prop::option::weighted(0.5, v).boxed()),
        None => (None, Just(None).boxed()),
    };
    let strategy = (values, prop::collection::vec(mutation(), 0..=4));
    let ok = Cell::new(0usize);
    let result = runner.run(&strategy, |(value, mutations)| {
        let mut bytes = valid.to_vec();
        if let (Some(f), Some(v)) = (apply, value) {
            f(&mut bytes, v);
        }
        std::fs::write(&file, mutate(&bytes, &mutations)).unwrap();
        if parse(&file) {
            ok.set(ok.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!(
            "{name}: {e} (DICCAE_FUZZ_SEED={}); the last input tried is kept at {}",
            base_seed(),
            file.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    ok.get()
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
    let ok = fuzz(
        "wav",
        &valid,
        1_500,
        Some((wav_rate, extreme_rate())),
        |p| load_wav(p).is_ok(),
    );
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
        let ok = fuzz(name, &valid, 600, None, |p| load_frame(p, 16).is_ok());
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
    let ok = fuzz("manifest", &valid, 1_500, None, |p| {
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
    let ok = fuzz("config", &valid, 1_500, None, |p| {
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
    let ok = fuzz("state", &state, 800, None, |p| {
        std::fs::copy(p, at.join("state.json")).unwrap();
        load(&at).is_ok()
    });
    assert!(ok < 800, "no mutated state was refused");
    std::fs::write(at.join("state.json"), &state).unwrap();
    let ok = fuzz("tensors", &tensors_file, 800, None, |p| {
        std::fs::copy(p, at.join("tensors.safetensors")).unwrap();
        load(&at).is_ok()
    });
    assert!(ok < 800, "no mutated tensor file was refused");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cavmae_lists_and_label_csvs_never_panic() {
    let csv = b"index,mid,display_name\n0,/m/dog,\"Dog, barking\"\n1,/m/bell,Bell\n".to_vec();
    let ok = fuzz("cavmae-csv", &csv, 1_000, None, |p| {
        diccae_engine::data::cavmae::read_label_csv(p).is_ok()
    });
    assert!(ok < 1_000, "no mutation was refused");
    let list = br#"{"data": [{"video_id": "a", "wav": "a.wav", "video_path": "f", "labels": "/m/dog"}, {"video_id": "b", "wav": "b.wav", "video_path": "f", "labels": "/m/bell,/m/dog"}]}"#.to_vec();
    let out = scratch("cavmae-out");
    let ok = fuzz("cavmae-list", &list, 1_000, None, |p| {
        let lists = [(p.to_path_buf(), diccae_engine::data::manifest::Split::Train)];
        diccae_engine::data::cavmae::import(&lists, None, 10, &out).is_ok()
    });
    // No entry's files exist, so no list imports: every case is an error.
    assert_eq!(ok, 0);
    let _ = std::fs::remove_dir_all(&out);
}
