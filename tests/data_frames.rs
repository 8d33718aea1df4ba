//! Video frames: PNG/JPEG decoding, resizing, ImageNet normalisation and
//! layout, frame listing from a directory, and uniform frame sampling.

use std::path::PathBuf;

use diccae_engine::data::{
    FrameSpec, IMAGENET_MEAN, IMAGENET_STD, Sampling, flip_horizontal, frame_paths, load_frame,
    sample_indices,
};
use diccae_engine::rng::seeded;
use image::{Rgb, RgbImage};

/// A temp directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("diccae-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn normalised(v: u8, c: usize) -> f32 {
    (f32::from(v) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
}

#[test]
fn png_and_jpeg_decode_resize_and_normalise() {
    let dir = TempDir::new("frames-decode");
    // Left half red, right half blue, 40×20 (not square: resize ignores aspect).
    let img = RgbImage::from_fn(40, 20, |x, _| {
        if x < 20 {
            Rgb([200, 10, 30])
        } else {
            Rgb([5, 60, 250])
        }
    });
    let png = dir.0.join("a.png");
    let jpg = dir.0.join("b.JPG");
    img.save(&png).unwrap();
    img.save_with_format(&jpg, image::ImageFormat::Jpeg)
        .unwrap();
    // A JPEG under a .png name is still decoded (format from content).
    let disguised = dir.0.join("c.png");
    std::fs::copy(&jpg, &disguised).unwrap();

    for (path, tol) in [(&png, 1e-6), (&jpg, 0.15), (&disguised, 0.15)] {
        let s = 9;
        let f = load_frame(path, s).unwrap();
        assert_eq!(f.len(), 3 * s * s);
        let plane = s * s;
        for c in 0..3 {
            // Pixel (row 4, col 0) is red-side, (row 4, col 8) blue-side.
            let left = f[c * plane + 4 * s];
            let right = f[c * plane + 4 * s + 8];
            let want_left = normalised([200, 10, 30][c], c);
            let want_right = normalised([5, 60, 250][c], c);
            assert!(
                (left - want_left).abs() < tol,
                "{path:?} c{c}: {left} vs {want_left}"
            );
            assert!(
                (right - want_right).abs() < tol,
                "{path:?} c{c}: {right} vs {want_right}"
            );
        }
    }

    // Same size: no resampling, exact values in [3, S, S] order.
    let tiny = RgbImage::from_fn(2, 2, |x, y| Rgb([(10 * x + 100 * y) as u8, 0, 255]));
    let p = dir.0.join("tiny.png");
    tiny.save(&p).unwrap();
    let f = load_frame(&p, 2).unwrap();
    let want: Vec<f32> = [[0u8, 10, 100, 110], [0; 4], [255; 4]]
        .iter()
        .enumerate()
        .flat_map(|(c, px)| px.iter().map(move |&v| normalised(v, c)))
        .collect();
    assert_eq!(f, want);

    let mut flipped = f.clone();
    flip_horizontal(&mut flipped, 2);
    assert_eq!(flipped[0], f[1]);
    assert_eq!(flipped[2], f[3]);

    let missing = dir.0.join("missing.png");
    let err = load_frame(&missing, 4).unwrap_err().to_string();
    assert!(
        err.contains("missing.png") && err.contains("not found"),
        "{err}"
    );
    let garbage = dir.0.join("garbage.png");
    std::fs::write(&garbage, b"definitely not an image").unwrap();
    let err = load_frame(&garbage, 4).unwrap_err().to_string();
    assert!(
        err.contains("garbage.png") && err.contains("decode"),
        "{err}"
    );
}

#[test]
fn frame_paths_from_list_and_directory() {
    let dir = TempDir::new("frames-paths");
    let sub = dir.0.join("frames/clip");
    std::fs::create_dir_all(sub.join("nested.png")).unwrap();
    for name in ["f10.png", "f2.jpg", "f1.JPEG", "notes.txt", "f0003.png"] {
        std::fs::write(sub.join(name), b"x").unwrap();
    }
    let got = frame_paths(&FrameSpec::Dir("frames/clip/".into()), &dir.0).unwrap();
    let names: Vec<String> = got
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["f1.JPEG", "f2.jpg", "f0003.png", "f10.png"]);

    let list = FrameSpec::Files(vec!["b.png".into(), "a.png".into()]);
    assert_eq!(
        frame_paths(&list, &dir.0).unwrap(),
        vec![dir.0.join("b.png"), dir.0.join("a.png")]
    );

    std::fs::create_dir_all(dir.0.join("empty")).unwrap();
    let err = frame_paths(&FrameSpec::Dir("empty".into()), &dir.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty") && err.contains("no .png"), "{err}");
    let err = frame_paths(&FrameSpec::Dir("nowhere".into()), &dir.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("nowhere"), "{err}");
}

#[test]
fn uniform_sampling_eval_and_train() {
    assert_eq!(sample_indices(8, 4, Sampling::Eval).unwrap(), [1, 3, 5, 7]);
    assert_eq!(sample_indices(10, 4, Sampling::Eval).unwrap(), [1, 3, 6, 8]);
    assert_eq!(sample_indices(1, 3, Sampling::Eval).unwrap(), [0, 0, 0]);
    assert_eq!(
        sample_indices(3, 6, Sampling::Eval).unwrap(),
        [0, 0, 1, 1, 2, 2]
    );
    assert_eq!(sample_indices(5, 1, Sampling::Eval).unwrap(), [2]);

    let mut rng = seeded(1);
    let mut hits = [[false; 25]; 4];
    for _ in 0..400 {
        let idx = sample_indices(100, 4, Sampling::Train(&mut rng)).unwrap();
        for (seg, &i) in idx.iter().enumerate() {
            assert!(
                (25 * seg..25 * (seg + 1)).contains(&i),
                "segment {seg}: {i}"
            );
            hits[seg][i - 25 * seg] = true;
        }
    }
    assert!(
        hits.iter().flatten().filter(|&&h| h).count() > 90,
        "jitter covers segments"
    );

    assert!(sample_indices(0, 4, Sampling::Eval).is_err());
    assert!(sample_indices(4, 0, Sampling::Eval).is_err());
}
