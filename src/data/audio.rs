//! WAV loading: any PCM WAV to 16 kHz mono `f32` in [-1, 1], and fitting a
//! clip to a fixed length (METHOD.md §1, audio inputs).

use std::path::Path;

use rand::Rng;
use rubato::{FftFixedInOut, Resampler};

use super::Sampling;
use crate::error::{Error, Result};

/// The sample rate every clip is resampled to.
pub const TARGET_SAMPLE_RATE: u32 = 16_000;

/// The sample rates a WAV may declare: anything outside is refused before a
/// buffer is sized from it (a corrupt header can claim 2³¹ Hz).
pub const SAMPLE_RATE_RANGE: std::ops::RangeInclusive<u32> = 1_000..=384_000;

/// The longest clip accepted, in seconds of audio: checked on the header,
/// before any sample is read, so a header claiming billions of samples is a
/// clear error, never an allocation failure.
pub const MAX_CLIP_SECONDS: u64 = 3_600;

/// Input chunk length requested from the FFT resampler (it rounds up to a
/// multiple of the rates' reduced ratio).
const RESAMPLE_CHUNK: usize = 1024;

/// Loads a WAV file as 16 kHz mono samples in [-1, 1].
///
/// Accepts any sample rate and channel count (channels are averaged) and
/// 8/16/24/32-bit integer or 32-bit float PCM. Integer samples are scaled by
/// `2^(bits-1)`; float samples and the resampled signal are clamped to
/// [-1, 1]. Resampling uses rubato's synchronous FFT resampler
/// ([`FftFixedInOut`]), with its delay removed, so the output has
/// `round(n · 16000 / rate)` samples aligned with the input.
///
/// Errors ([`Error::Data`], naming the file): the file does not exist or
/// cannot be read, it is not a WAV file or its header is corrupt, its format
/// is unsupported, its sample rate is outside [`SAMPLE_RATE_RANGE`], it is
/// longer than [`MAX_CLIP_SECONDS`], its sample data is truncated, a float
/// sample is NaN or infinite, or it holds zero samples. All are checked
/// before a buffer is sized from the header.
pub fn load_wav(path: impl AsRef<Path>) -> Result<Vec<f32>> {
    let path = path.as_ref();
    if !path.exists() {
        return Err(Error::data(path, "audio file not found"));
    }
    let mut reader = hound::WavReader::open(path).map_err(|e| match e {
        hound::Error::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::data(path, "not a WAV file or truncated WAV header")
        }
        hound::Error::IoError(io) => Error::data(path, format!("cannot read WAV file: {io}")),
        hound::Error::FormatError(what) => Error::data(
            path,
            format!("not a WAV file or corrupt WAV header ({what})"),
        ),
        hound::Error::Unsupported => Error::data(
            path,
            "unsupported WAV format (expected 8/16/24/32-bit integer or 32-bit float PCM)",
        ),
        other => Error::data(path, format!("cannot open WAV file: {other}")),
    })?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 {
        return Err(Error::data(path, "WAV header declares zero channels"));
    }
    if !SAMPLE_RATE_RANGE.contains(&spec.sample_rate) {
        return Err(Error::data(
            path,
            format!(
                "WAV header declares a sample rate of {} Hz, outside {}–{} Hz (a corrupt header?)",
                spec.sample_rate,
                SAMPLE_RATE_RANGE.start(),
                SAMPLE_RATE_RANGE.end()
            ),
        ));
    }
    let frames = u64::from(reader.duration());
    if frames > MAX_CLIP_SECONDS * u64::from(spec.sample_rate) {
        return Err(Error::data(
            path,
            format!(
                "WAV header declares {frames} frames ({} s at {} Hz), more than the {MAX_CLIP_SECONDS} s a clip may last; cut the recording into clips",
                frames / u64::from(spec.sample_rate),
                spec.sample_rate
            ),
        ));
    }
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
    let data_bytes = u64::from(reader.len()) * u64::from(spec.bits_per_sample.div_ceil(8));
    if data_bytes > file_bytes {
        return Err(Error::data(
            path,
            format!(
                "WAV header declares {data_bytes} bytes of samples but the file has {file_bytes} bytes: truncated"
            ),
        ));
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| (f64::from(v) * scale) as f32))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| sample_error(path, e))?
        }
        (hound::SampleFormat::Float, 32) => {
            let raw: Vec<f32> = reader
                .samples::<f32>()
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| sample_error(path, e))?;
            let bad = raw.iter().filter(|v| !v.is_finite()).count();
            if bad > 0 {
                return Err(Error::data(
                    path,
                    format!(
                        "{bad} of {} float samples are NaN or infinite; the recording is damaged",
                        raw.len()
                    ),
                ));
            }
            raw.into_iter().map(|v| v.clamp(-1.0, 1.0)).collect()
        }
        (format, bits) => {
            return Err(Error::data(
                path,
                format!(
                    "unsupported WAV sample format: {bits}-bit {} (expected 8/16/24/32-bit \
                     integer or 32-bit float PCM)",
                    match format {
                        hound::SampleFormat::Int => "integer",
                        hound::SampleFormat::Float => "float",
                    }
                ),
            ));
        }
    };
    if interleaved.len() < channels {
        return Err(Error::data(path, "WAV file contains zero samples"));
    }
    let mono = mix_down(&interleaved, channels);
    let mut out = resample(&mono, spec.sample_rate, TARGET_SAMPLE_RATE)
        .map_err(|detail| Error::data(path, detail))?;
    for v in &mut out {
        *v = v.clamp(-1.0, 1.0);
    }
    Ok(out)
}

/// Maps a hound error met while reading sample data to a data error.
fn sample_error(path: &Path, e: hound::Error) -> Error {
    match e {
        hound::Error::IoError(io) => Error::data(
            path,
            format!("truncated or unreadable WAV sample data: {io}"),
        ),
        other => Error::data(path, format!("corrupt WAV sample data: {other}")),
    }
}

/// Averages interleaved frames over `channels` (an incomplete last frame is
/// dropped).
fn mix_down(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels == 1 {
        return interleaved.to_vec();
    }
    let inv = 1.0 / channels as f32;
    interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() * inv)
        .collect()
}

/// Resamples mono `input` from `rate_in` to `rate_out` Hz with rubato's FFT
/// resampler, returning `round(n · rate_out / rate_in)` samples (at least 1)
/// with the resampler's delay removed. Errors are plain descriptions.
pub(crate) fn resample(
    input: &[f32],
    rate_in: u32,
    rate_out: u32,
) -> std::result::Result<Vec<f32>, String> {
    if rate_in == rate_out {
        return Ok(input.to_vec());
    }
    let n = input.len() as u64;
    let expected =
        ((n * u64::from(rate_out) + u64::from(rate_in) / 2) / u64::from(rate_in)).max(1) as usize;
    let mut resampler =
        FftFixedInOut::<f32>::new(rate_in as usize, rate_out as usize, RESAMPLE_CHUNK, 1)
            .map_err(|e| format!("cannot resample from {rate_in} Hz to {rate_out} Hz: {e}"))?;
    let delay = resampler.output_delay();
    let chunk_in = resampler.input_frames_next();
    let mut out_buf = resampler.output_buffer_allocate(true);
    let mut in_buf = vec![0.0f32; chunk_in];
    let mut out = Vec::with_capacity(delay + expected + resampler.output_frames_max());
    let mut pos = 0usize;
    while out.len() < delay + expected {
        let take = input.len().saturating_sub(pos).min(chunk_in);
        in_buf[..take].copy_from_slice(&input[pos..pos + take]);
        in_buf[take..].fill(0.0);
        pos += take;
        let (_, produced) = resampler
            .process_into_buffer(&[&in_buf[..]], &mut out_buf, None)
            .map_err(|e| format!("resampling from {rate_in} Hz failed: {e}"))?;
        out.extend_from_slice(&out_buf[0][..produced]);
    }
    Ok(out[delay..delay + expected].to_vec())
}

/// Pads (with zeros) or crops `samples` to exactly `len` samples.
///
/// The clip is treated as a window placed on a zero background of length
/// `len`: cropping takes `len` consecutive samples, padding places the whole
/// clip inside `len` zeros. [`Sampling::Eval`] centres the window (the
/// deterministic choice for evaluation); [`Sampling::Train`] draws the
/// offset uniformly from the RNG (random crop, or random placement when
/// padding).
pub fn fit_length(samples: &[f32], len: usize, sampling: Sampling<'_>) -> Vec<f32> {
    let n = samples.len();
    if n == len {
        return samples.to_vec();
    }
    let slack = n.abs_diff(len);
    let offset = match sampling {
        Sampling::Eval => slack / 2,
        Sampling::Train(rng) => rng.random_range(0..=slack),
    };
    if n > len {
        samples[offset..offset + len].to_vec()
    } else {
        let mut out = vec![0.0; len];
        out[offset..offset + n].copy_from_slice(samples);
        out
    }
}
