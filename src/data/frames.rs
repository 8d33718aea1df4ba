//! Video frames (METHOD.md §1): decoding PNG/JPEG frames to normalised
//! `[3, S, S]` tensors, listing a clip's frames, and choosing `T` of them.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::Sampling;
use crate::error::{Error, Result};

/// ImageNet per-channel mean (RGB) of pixel values in [0, 1].
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet per-channel standard deviation (RGB) of pixel values in [0, 1].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// File extensions (case-insensitive) taken from a frame directory.
const FRAME_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The `frames` field of a manifest line: an explicit list of image files or
/// a directory holding them. Paths are relative to the manifest's directory
/// (absolute paths are used as given).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FrameSpec {
    /// Image files in temporal order.
    Files(Vec<String>),
    /// A directory; its `.png`/`.jpg`/`.jpeg` files in name order are the frames.
    Dir(String),
}

/// The largest width or height a frame image may declare; a larger header
/// is refused before its pixels are allocated.
pub const MAX_FRAME_SIDE: u32 = 8_192;

/// The most memory one frame's decoding may allocate.
pub const MAX_FRAME_DECODE_BYTES: u64 = 256 << 20;

/// Decodes the PNG or JPEG image at `path` (format detected from the
/// content), converts it to RGB, resizes it to `size × size` (triangle, i.e.
/// bilinear, filter; the aspect ratio is not kept) and normalises each
/// channel with the ImageNet mean and std. Layout `[3, size, size]`
/// (channel-major, rows top to bottom). Images wider or taller than
/// [`MAX_FRAME_SIDE`], or needing more than [`MAX_FRAME_DECODE_BYTES`] to
/// decode, are refused with a data error.
pub fn load_frame(path: impl AsRef<Path>, size: usize) -> Result<Vec<f32>> {
    let path = path.as_ref();
    if size == 0 {
        return Err(Error::data(path, "frame size must be at least 1"));
    }
    let side = u32::try_from(size)
        .map_err(|_| Error::data(path, format!("frame size {size} is too large")))?;
    if !path.is_file() {
        return Err(Error::data(path, "frame image not found"));
    }
    let mut reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| Error::data(path, format!("cannot read frame image: {e}")))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_FRAME_SIDE);
    limits.max_image_height = Some(MAX_FRAME_SIDE);
    limits.max_alloc = Some(MAX_FRAME_DECODE_BYTES);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| Error::data(path, format!("cannot decode frame image: {e}")))?;
    let rgb = img.to_rgb8();
    let rgb = if rgb.width() == side && rgb.height() == side {
        rgb
    } else {
        image::imageops::resize(&rgb, side, side, FilterType::Triangle)
    };
    let plane = size * size;
    let mut out = vec![0.0f32; 3 * plane];
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            let v = f32::from(px.0[c]) / 255.0;
            out[c * plane + i] = (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    Ok(out)
}

/// Mirrors a `[3, size, size]` frame left to right in place.
pub fn flip_horizontal(frame: &mut [f32], size: usize) {
    for row in frame.chunks_exact_mut(size.max(1)) {
        row.reverse();
    }
}

/// Compares file names with digit runs ordered by value ("f2" < "f10"), so
/// unpadded frame numbers sort in temporal order; equal to plain
/// lexicographic order for zero-padded names.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (&a[..da], &b[..db]);
                let ta = na
                    .iter()
                    .position(|&c| c != b'0')
                    .map_or(&na[..0], |p| &na[p..]);
                let tb = nb
                    .iter()
                    .position(|&c| c != b'0')
                    .map_or(&nb[..0], |p| &nb[p..]);
                let ord = ta.len().cmp(&tb.len()).then(ta.cmp(tb)).then(da.cmp(&db));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

/// The frame image paths of a manifest `frames` field, resolved against
/// `base_dir`: the listed files in the given order, or every `.png`, `.jpg`
/// and `.jpeg` file (case-insensitive) directly inside the directory, sorted
/// by name with digit runs compared by value (`f2` before `f10`).
///
/// Listed files are not checked here (loading reports a missing one); a
/// missing directory, a directory without frames or an empty list is an
/// error.
pub fn frame_paths(spec: &FrameSpec, base_dir: &Path) -> Result<Vec<PathBuf>> {
    match spec {
        FrameSpec::Files(files) => {
            if files.is_empty() {
                return Err(Error::data(base_dir, "the frame list is empty"));
            }
            Ok(files.iter().map(|f| base_dir.join(f)).collect())
        }
        FrameSpec::Dir(dir) => {
            let dir = base_dir.join(dir);
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| Error::data(&dir, format!("cannot read frame directory: {e}")))?;
            let mut named = Vec::new();
            for entry in entries {
                let entry = entry
                    .map_err(|e| Error::data(&dir, format!("cannot read frame directory: {e}")))?;
                let path = entry.path();
                let is_frame = path.is_file()
                    && path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        FRAME_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e))
                    });
                if is_frame {
                    named.push((entry.file_name().to_string_lossy().into_owned(), path));
                }
            }
            if named.is_empty() {
                return Err(Error::data(
                    &dir,
                    "frame directory contains no .png, .jpg or .jpeg files",
                ));
            }
            named.sort_by(|a, b| natural_cmp(&a.0, &b.0));
            Ok(named.into_iter().map(|(_, p)| p).collect())
        }
    }
}

/// Chooses `t` frame indices out of `n_available`, uniformly over the clip:
/// `[0, n)` is split into `t` equal segments and one index is taken from
/// each, in order. [`Sampling::Eval`] takes each segment's centre;
/// [`Sampling::Train`] a uniformly random position inside the segment
/// (temporal jitter). With fewer frames than `t`, indices repeat.
pub fn sample_indices(n_available: usize, t: usize, sampling: Sampling<'_>) -> Result<Vec<usize>> {
    if n_available == 0 || t == 0 {
        return Err(Error::invalid(
            "sample_indices",
            format!("need at least one frame and t ≥ 1, got {n_available} frames and t = {t}"),
        ));
    }
    let seg = n_available as f64 / t as f64;
    let mut rng = match sampling {
        Sampling::Eval => None,
        Sampling::Train(rng) => Some(rng),
    };
    Ok((0..t)
        .map(|i| {
            let u: f64 = match rng.as_deref_mut() {
                None => 0.5,
                Some(r) => r.random_range(0.0..1.0),
            };
            (((i as f64 + u) * seg).floor() as usize).min(n_available - 1)
        })
        .collect())
}
