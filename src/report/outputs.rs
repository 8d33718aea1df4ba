//! Writes a run's outputs: `summary.json`, `report.md` and the PNG plots.

use std::path::Path;

use crate::atomic_file::write_atomic;
use crate::error::{Error, Result};
use crate::report::markdown::render_report;
use crate::report::plot::{Series, heatmap, line_chart};
use crate::report::record::{EpochRecord, display_name};
use crate::report::summary::Summary;

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        detail: format!("cannot write: {e}"),
    }
}

/// Writes `summary.json`, `report.md` and the plots into `out`.
pub fn write_outputs(out: &Path, s: &Summary, history: &[EpochRecord]) -> Result<()> {
    let json_path = out.join("summary.json");
    let text = serde_json::to_string_pretty(s).map_err(|e| io_err(&json_path, e))?;
    write_atomic(&json_path, text.as_bytes())?;

    let plots = out.join("plots");
    std::fs::create_dir_all(&plots).map_err(|e| io_err(&plots, e))?;
    let ep = |f: &dyn Fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter_map(|h| f(h).map(|v| (h.epoch as f64 + 1.0, v)))
            .collect()
    };
    // The total, then every loss term any epoch logged (l_ins first).
    let mut keys: Vec<&str> = Vec::new();
    for h in history {
        for (key, _) in h.loss_terms() {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys.sort_by_key(|k| (*k != "l_ins", *k));
    let shown: Vec<String> = keys.iter().map(|k| display_name(k)).collect();
    let mut losses = vec![Series {
        name: "total",
        points: ep(&|h| Some(h.loss)),
    }];
    for (key, name) in keys.iter().zip(&shown) {
        losses.push(Series {
            name,
            points: ep(&|h| h.term(key)),
        });
    }
    line_chart(
        &plots.join("losses.png"),
        "Training losses (epoch means)",
        "epoch",
        &losses,
    )?;
    if !s.clustering.epochs.is_empty() {
        let rounds = |v: &[f64]| -> Vec<(f64, f64)> {
            s.clustering
                .epochs
                .iter()
                .zip(v)
                .map(|(&e, &x)| (e as f64, x))
                .collect()
        };
        line_chart(
            &plots.join("clustering.png"),
            "Pseudo-labels per clustering round",
            "epoch",
            &[
                Series {
                    name: "NMI",
                    points: rounds(&s.clustering.nmi),
                },
                Series {
                    name: "ARI",
                    points: rounds(&s.clustering.ari),
                },
                Series {
                    name: "Hungarian acc.",
                    points: rounds(&s.clustering.accuracy),
                },
                Series {
                    name: "purity",
                    points: rounds(&s.clustering.purity),
                },
                Series {
                    name: "size entropy",
                    points: rounds(&s.clustering.size_entropy),
                },
            ],
        )?;
    }
    let c = s.classes.len();
    if c > 0 && s.eval.confusion_matrix.len() == c * c {
        heatmap(
            &plots.join("confusion.png"),
            "Fused linear probe, test split: rows true, columns predicted",
            &s.eval.confusion_matrix,
            c,
            c,
            &s.classes,
        )?;
    }
    if let Some((k, w)) = &s.weight_matrix {
        let w: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
        heatmap(
            &plots.join("weights.png"),
            "Confusion weights W (cluster x cluster)",
            &w,
            *k,
            *k,
            &[],
        )?;
    }
    let report = out.join("report.md");
    write_atomic(&report, render_report(s).as_bytes())
}
