//! WAV loading: formats, resampling to 16 kHz, pitch preservation, length
//! fitting and clear errors. Files are written at test time into a temp dir.

use std::path::{Path, PathBuf};

use diccae_engine::Error;
use diccae_engine::data::{Sampling, TARGET_SAMPLE_RATE, fit_length, load_wav};
use diccae_engine::rng::seeded;

/// A temp directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("diccae-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sine of `freq` Hz, amplitude `amp`, `secs` seconds at `rate`.
fn tone(freq: f64, amp: f64, secs: f64, rate: u32) -> Vec<f64> {
    let n = (secs * f64::from(rate)).round() as usize;
    (0..n)
        .map(|i| amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
        .collect()
}

/// Writes `signal` (values in [-1, 1]) to every channel as integer PCM.
fn write_int(path: &Path, signal: &[f64], rate: u32, channels: u16, bits: u16) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let full = ((1i64 << (bits - 1)) - 1) as f64;
    for &x in signal {
        for _ in 0..channels {
            let v = (x * full).round() as i32;
            if bits == 8 {
                w.write_sample(v as i8).unwrap();
            } else {
                w.write_sample(v).unwrap();
            }
        }
    }
    w.finalize().unwrap();
}

/// Writes `signal` to every channel as 32-bit float PCM.
fn write_float(path: &Path, signal: &[f64], rate: u32, channels: u16) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &x in signal {
        for _ in 0..channels {
            w.write_sample(x as f32).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// Frequency estimate from upward zero crossings over the middle of the
/// signal (away from resampler edge effects).
fn zero_crossing_freq(x: &[f32], rate: u32) -> f64 {
    let (a, b) = (x.len() / 10, x.len() * 9 / 10);
    let seg = &x[a..b];
    let ups: Vec<usize> = (1..seg.len())
        .filter(|&i| seg[i - 1] < 0.0 && seg[i] >= 0.0)
        .collect();
    let cycles = (ups.len() - 1) as f64;
    let span = (ups[ups.len() - 1] - ups[0]) as f64;
    cycles * f64::from(rate) / span
}

fn assert_data_error(err: Error, path: &Path, needle: &str) {
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Data { .. }),
        "expected a data error, got {msg}"
    );
    assert!(
        msg.contains(&path.display().to_string()),
        "error does not name the file: {msg}"
    );
    assert!(
        msg.to_lowercase().contains(needle),
        "error does not say `{needle}`: {msg}"
    );
}

#[test]
fn formats_resample_to_16k_and_keep_pitch() {
    let dir = TempDir::new("audio-formats");
    let secs = 1.0;
    // (name, rate, channels, bits; 0 bits = 32-bit float)
    let cases = [
        ("8k-mono-16.wav", 8000, 1, 16),
        ("44k1-stereo-16.wav", 44100, 2, 16),
        ("48k-float.wav", 48000, 1, 0),
        ("22k05-24.wav", 22050, 1, 24),
        ("16k-8bit.wav", 16000, 1, 8),
        ("32k-quad-32.wav", 32000, 4, 32),
    ];
    for (name, rate, channels, bits) in cases {
        let path = dir.path(name);
        let signal = tone(440.0, 0.5, secs, rate);
        if bits == 0 {
            write_float(&path, &signal, rate, channels);
        } else {
            write_int(&path, &signal, rate, channels, bits);
        }
        let out = load_wav(&path).unwrap();
        let expected = (signal.len() as f64 * 16000.0 / f64::from(rate)).round() as usize;
        assert_eq!(out.len(), expected, "{name}: resampled length");
        assert!(
            out.iter().all(|v| (-1.0..=1.0).contains(v)),
            "{name}: range"
        );
        let f = zero_crossing_freq(&out, TARGET_SAMPLE_RATE);
        assert!((f - 440.0).abs() < 1.0, "{name}: 440 Hz became {f:.2} Hz");
        // Amplitude survives resampling and channel averaging.
        let peak = out[out.len() / 4..out.len() * 3 / 4]
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        assert!((peak - 0.5).abs() < 0.02, "{name}: peak {peak}");
    }
}

#[test]
fn resampling_is_aligned_with_the_input() {
    // A click at 0.5 s must stay at 0.5 s (the resampler delay is removed).
    let dir = TempDir::new("audio-align");
    let path = dir.path("click.wav");
    let mut signal = vec![0.0; 44100];
    signal[22050] = 0.9;
    write_int(&path, &signal, 44100, 1, 16);
    let out = load_wav(&path).unwrap();
    let argmax = (0..out.len())
        .max_by(|&a, &b| out[a].abs().total_cmp(&out[b].abs()))
        .unwrap();
    assert!(argmax.abs_diff(8000) <= 1, "click moved to sample {argmax}");
}

#[test]
fn channels_are_averaged() {
    let dir = TempDir::new("audio-mix");
    let path = dir.path("lr.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for _ in 0..1000 {
        w.write_sample(16384i16).unwrap(); // left 0.5
        w.write_sample(-8192i16).unwrap(); // right -0.25
    }
    w.finalize().unwrap();
    let out = load_wav(&path).unwrap();
    assert_eq!(out.len(), 1000);
    assert!(out.iter().all(|&v| (v - 0.125).abs() < 1e-6), "{}", out[0]);
}

#[test]
fn bad_files_give_errors_naming_the_file() {
    let dir = TempDir::new("audio-bad");

    let missing = dir.path("nope.wav");
    assert_data_error(load_wav(&missing).unwrap_err(), &missing, "not found");

    let random = dir.path("random.wav");
    let mut rng = seeded(7);
    let bytes: Vec<u8> = (0..2000)
        .map(|_| rand::Rng::random::<u8>(&mut rng))
        .collect();
    std::fs::write(&random, bytes).unwrap();
    assert_data_error(load_wav(&random).unwrap_err(), &random, "not a wav");

    let good = dir.path("good.wav");
    write_int(&good, &tone(440.0, 0.5, 0.1, 16000), 16000, 1, 16);
    let full = std::fs::read(&good).unwrap();

    let header_cut = dir.path("header-cut.wav");
    std::fs::write(&header_cut, &full[..20]).unwrap();
    assert_data_error(load_wav(&header_cut).unwrap_err(), &header_cut, "header");

    let data_cut = dir.path("data-cut.wav");
    std::fs::write(&data_cut, &full[..full.len() / 2 + 1]).unwrap();
    assert_data_error(load_wav(&data_cut).unwrap_err(), &data_cut, "truncated");

    let empty = dir.path("empty.wav");
    write_int(&empty, &[], 16000, 1, 16);
    assert_data_error(load_wav(&empty).unwrap_err(), &empty, "zero samples");

    // A WAVE_FORMAT_ALAW (6) header: a valid RIFF file in an unsupported format.
    let alaw = dir.path("alaw.wav");
    let mut h = Vec::new();
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36u32 + 4).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&6u16.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&8000u32.to_le_bytes());
    h.extend_from_slice(&8000u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&8u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&4u32.to_le_bytes());
    h.extend_from_slice(&[1, 2, 3, 4]);
    std::fs::write(&alaw, h).unwrap();
    assert_data_error(load_wav(&alaw).unwrap_err(), &alaw, "unsupported");

    // Headers that would size a huge buffer are refused before any is
    // allocated: a sample rate of 2³¹ − 1 Hz (bytes 24..28 of a canonical
    // header, and the byte rate at 28..32), and a data chunk claiming 4 GB.
    let mut huge_rate = full.clone();
    huge_rate[24..28].copy_from_slice(&i32::MAX.to_le_bytes());
    huge_rate[28..32].copy_from_slice(&(i32::MAX as u32).wrapping_mul(2).to_le_bytes());
    let p = dir.path("huge-rate.wav");
    std::fs::write(&p, &huge_rate).unwrap();
    assert_data_error(load_wav(&p).unwrap_err(), &p, "sample rate");
    let mut huge_data = full.clone();
    huge_data[40..44].copy_from_slice(&(u32::MAX - 1).to_le_bytes());
    let p = dir.path("huge-data.wav");
    std::fs::write(&p, &huge_data).unwrap();
    let err = load_wav(&p).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("more than the") || msg.contains("truncated"),
        "{msg}"
    );
    assert_data_error(err, &p, "wav header declares");

    // Float samples that are NaN or infinite: a damaged recording, never
    // silence.
    for bad in [f64::NAN, f64::INFINITY] {
        let p = dir.path("nan.wav");
        let mut signal = tone(440.0, 0.5, 0.05, 16000);
        signal[100] = bad;
        write_float(&p, &signal, 16000, 1);
        assert_data_error(load_wav(&p).unwrap_err(), &p, "nan or infinite");
    }
}

#[test]
fn fit_length_pads_and_crops() {
    let x: Vec<f32> = (1..=10).map(|v| v as f32).collect();
    // Centre crop and centre pad.
    assert_eq!(fit_length(&x, 4, Sampling::Eval), vec![4.0, 5.0, 6.0, 7.0]);
    assert_eq!(
        fit_length(&x[..3], 7, Sampling::Eval),
        vec![0.0, 0.0, 1.0, 2.0, 3.0, 0.0, 0.0]
    );
    assert_eq!(fit_length(&x, 10, Sampling::Eval), x);
    // Random crops are contiguous windows; every offset appears.
    let mut rng = seeded(3);
    let mut seen = [false; 7];
    for _ in 0..200 {
        let c = fit_length(&x, 4, Sampling::Train(&mut rng));
        let off = c[0] as usize - 1;
        assert_eq!(c, x[off..off + 4].to_vec());
        seen[off] = true;
    }
    assert!(seen.iter().all(|&s| s), "offsets seen: {seen:?}");
    // Random padding keeps the whole clip.
    for _ in 0..20 {
        let p = fit_length(&x[..3], 8, Sampling::Train(&mut rng));
        assert_eq!(p.len(), 8);
        let start = p.iter().position(|&v| v != 0.0).unwrap();
        assert_eq!(&p[start..start + 3], &x[..3]);
    }
    // Same seed, same crop.
    let a = fit_length(&x, 5, Sampling::Train(&mut seeded(11)));
    let b = fit_length(&x, 5, Sampling::Train(&mut seeded(11)));
    assert_eq!(a, b);
}
