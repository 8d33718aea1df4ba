//! Plots are written as readable PNGs.

use diccae_engine::report::plot::{Series, heatmap, line_chart};

#[test]
fn line_chart_and_heatmap_write_pngs() {
    let dir = std::env::temp_dir().join(format!("diccae-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let loss = Series {
        name: "L_ins",
        points: (0..50)
            .map(|i| (i as f64, 4.0 * (-0.05 * i as f64).exp()))
            .collect(),
    };
    let cls = Series {
        name: "L_cls",
        points: (10..50)
            .map(|i| (i as f64, 1.0 + 0.3 * (i as f64 * 0.3).sin()))
            .collect(),
    };
    let with_nan = Series {
        name: "nan-skipped",
        points: vec![(0.0, f64::NAN), (1.0, 2.0)],
    };
    let p = dir.join("loss.png");
    line_chart(&p, "Training losses", "epoch", &[loss, cls, with_nan]).unwrap();
    let img = image::open(&p).unwrap();
    assert_eq!((img.width(), img.height()), (900, 520));

    let k = 10;
    let m: Vec<f64> = (0..k * k)
        .map(|i| {
            if i % (k + 1) == 0 {
                30.0
            } else {
                (i % 7) as f64
            }
        })
        .collect();
    let labels: Vec<String> = (0..k).map(|i| format!("class {i}")).collect();
    let p = dir.join("confusion.png");
    heatmap(&p, "Confusion matrix", &m, k, k, &labels).unwrap();
    assert!(image::open(&p).unwrap().width() > 400);
    assert!(heatmap(&p, "bad", &m, 3, 3, &[]).is_err());
    if std::env::var_os("DICCAE_KEEP_PLOTS").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("plots kept in {}", dir.display());
    }
}
