//! The results of a run: `summary.json` (machine-readable), `report.md`
//! (for people) and PNG plots, plus the table printed at the end of `train`.
//!
//! `summary.json` fields (accuracies are fractions in [0, 1]):
//! - `method`, `preset`, `dataset`, `epochs`, `seconds` (wall time of the
//!   whole run, resumed parts included), `parameters`, `train_clips`,
//!   `test_clips`, `skipped_clips`;
//! - `linear_probe.{audio,video,fused}.{top1,top5}` and `knn.fused.top1`
//!   (null without labels);
//! - `random_init`: the same evaluation of the untrained encoder;
//! - `retrieval.{audio_to_video,video_to_audio}.{r1,r5,r10}`;
//! - `clustering.{epochs,nmi,ari,accuracy,purity,size_entropy,stability}`: one
//!   value per clustering round (`nmi`/`ari`/`accuracy`/`purity` against the
//!   true labels; `accuracy` matches clusters to classes one-to-one, so with
//!   K = 2 × classes at most about half the clips can match, while `purity`
//!   gives each cluster its majority class);
//!   `clustering.terms_from_epoch`: the first epoch the cluster terms trained
//!   (earlier rounds only observed);
//! - `kmeans_nmi`: NMI of k-means (K = classes) on the test split's fused
//!   features against the true labels (shown as a percentage in the table);
//! - `most_confused`, `known_pairs`: class pairs with `confusion_rate` and
//!   `pair_accuracy`; `known_pairs_accuracy`: mean over the built-in data's
//!   confusable pairs;
//! - `weights`: the final W's largest and mean off-diagonal entries.

use crate::atomic_file::write_atomic;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::report::plot::{Series, heatmap, line_chart};
use crate::train::clusters::ClusterSnapshot;
use crate::train::evaluate::Evaluation;
use crate::train::features::Dataset;
use crate::train::record::EpochRecord;

/// One value per clustering round.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusteringSummary {
    /// Epoch of each round.
    pub epochs: Vec<usize>,
    /// NMI against the true labels.
    pub nmi: Vec<f64>,
    /// ARI against the true labels.
    pub ari: Vec<f64>,
    /// Hungarian (one-to-one) accuracy against the true labels.
    pub accuracy: Vec<f64>,
    /// Purity (each cluster's majority class) against the true labels.
    #[serde(default)]
    pub purity: Vec<f64>,
    /// Normalised cluster-size entropy.
    pub size_entropy: Vec<f64>,
    /// Fraction of unchanged pseudo-labels (rounds after the first).
    pub stability: Vec<f64>,
    /// First epoch whose loss included a cluster term; rounds before it only
    /// observed the representation (null when the terms never ran).
    #[serde(default)]
    pub terms_from_epoch: Option<usize>,
}

/// Statistics of the final W.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WeightSummary {
    /// Largest off-diagonal entry.
    pub max: f64,
    /// Mean off-diagonal entry.
    pub mean_offdiag: f64,
}

/// `knn_k` of summaries written before it was stored (all used k = 20).
fn default_knn_k() -> usize {
    20
}

/// Everything `summary.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The objective (`diccae` or `avcl`).
    pub method: String,
    /// The preset the config started from.
    pub preset: String,
    /// The data the run used.
    pub dataset: String,
    /// Epochs trained.
    pub epochs: usize,
    /// Wall time of the run in seconds.
    pub seconds: f64,
    /// Trainable scalars.
    pub parameters: usize,
    /// Clips in the training split.
    pub train_clips: usize,
    /// Clips in the test split.
    pub test_clips: usize,
    /// Clips that could not be decoded.
    pub skipped_clips: usize,
    /// `eval.knn_k`: the neighbours of the kNN classifier.
    #[serde(default = "default_knn_k")]
    pub knn_k: usize,
    /// Class names.
    pub classes: Vec<String>,
    /// Final evaluation (flattened into the top level).
    #[serde(flatten)]
    pub eval: Evaluation,
    /// The untrained encoder's evaluation.
    pub random_init: Evaluation,
    /// Pseudo-label quality per round.
    pub clustering: ClusteringSummary,
    /// Final W, when the confusion-aware loss ran.
    pub weights: Option<WeightSummary>,
    /// The final W `[K, K]` (for the plot).
    #[serde(skip)]
    pub weight_matrix: Option<(usize, Vec<f32>)>,
}

impl Summary {
    /// Collects a run's results.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &Config,
        data: &Dataset,
        eval: Evaluation,
        random_init: Evaluation,
        clusters: Option<ClusterSnapshot>,
        history: &[EpochRecord],
        seconds: f64,
        parameters: usize,
    ) -> Self {
        let mut clustering = ClusteringSummary::default();
        let mut weights = None;
        let mut weight_matrix = None;
        clustering.terms_from_epoch = history
            .iter()
            .find(|h| {
                h.term("lambda_cls").unwrap_or(0.0) > 0.0
                    || h.term("lambda_conf").unwrap_or(0.0) > 0.0
            })
            .map(|h| h.epoch);
        if let Some(s) = &clusters {
            for r in &s.rounds {
                clustering.epochs.push(r.epoch);
                clustering.size_entropy.push(r.size_entropy);
                if let (Some(n), Some(a), Some(h)) = (r.nmi, r.ari, r.accuracy) {
                    clustering.nmi.push(n);
                    clustering.ari.push(a);
                    clustering.accuracy.push(h);
                }
                if let Some(p) = r.purity {
                    clustering.purity.push(p);
                }
                if let Some(st) = r.stability {
                    clustering.stability.push(st);
                }
            }
            let k = s.k;
            let off: Vec<f64> = (0..k * k)
                .filter(|i| i / k != i % k)
                .map(|i| f64::from(s.weights[i]))
                .collect();
            if history
                .iter()
                .any(|h| h.term("lambda_conf").unwrap_or(0.0) > 0.0)
                && !off.is_empty()
            {
                weights = Some(WeightSummary {
                    max: off.iter().copied().fold(f64::MIN, f64::max),
                    mean_offdiag: off.iter().sum::<f64>() / off.len() as f64,
                });
                weight_matrix = Some((k, s.weights.clone()));
            }
        }
        Summary {
            method: cfg.method.name().into(),
            preset: cfg.preset.clone(),
            dataset: data.name.clone(),
            epochs: history.len(),
            seconds,
            parameters,
            train_clips: data.train.len(),
            test_clips: data.test.len(),
            skipped_clips: data.skipped.len(),
            knn_k: cfg.eval.knn_k,
            classes: data.classes.clone(),
            eval,
            random_init,
            clustering,
            weights,
            weight_matrix,
        }
    }

    /// The fused linear-probe top-1 (the headline figure), if labelled.
    pub fn fused_top1(&self) -> Option<f64> {
        self.eval.linear_probe.map(|p| p.fused.top1)
    }

    /// A plain-text table of the headline results.
    pub fn table(&self) -> String {
        let pct = |v: f64| format!("{:6.1}%", 100.0 * v);
        let mut s = String::new();
        let _ = writeln!(s, "{:<34} {:>9} {:>12}", "", "pretrained", "random init");
        let knn = format!("kNN (k={}), fused top-1", self.knn_k);
        let rows: Vec<(&str, Option<f64>, Option<f64>)> = vec![
            (
                "linear probe, fused top-1",
                self.eval.linear_probe.map(|p| p.fused.top1),
                self.random_init.linear_probe.map(|p| p.fused.top1),
            ),
            (
                "linear probe, audio top-1",
                self.eval.linear_probe.map(|p| p.audio.top1),
                self.random_init.linear_probe.map(|p| p.audio.top1),
            ),
            (
                "linear probe, video top-1",
                self.eval.linear_probe.map(|p| p.video.top1),
                self.random_init.linear_probe.map(|p| p.video.top1),
            ),
            (
                "linear probe, fused top-5",
                self.eval.linear_probe.map(|p| p.fused.top5),
                self.random_init.linear_probe.map(|p| p.fused.top5),
            ),
            (
                &knn,
                self.eval.knn.map(|k| k.fused.top1),
                self.random_init.knn.map(|k| k.fused.top1),
            ),
            (
                "retrieval audio→video R@1",
                Some(self.eval.retrieval.audio_to_video.r1),
                Some(self.random_init.retrieval.audio_to_video.r1),
            ),
            (
                "retrieval video→audio R@1",
                Some(self.eval.retrieval.video_to_audio.r1),
                Some(self.random_init.retrieval.video_to_audio.r1),
            ),
            (
                "confusable-pair accuracy",
                self.eval.known_pairs_accuracy,
                self.random_init.known_pairs_accuracy,
            ),
        ];
        for (name, a, b) in rows {
            if a.is_none() && b.is_none() {
                continue;
            }
            let f = |v: Option<f64>| v.map_or("-".to_string(), pct);
            let _ = writeln!(s, "{name:<34} {:>9} {:>12}", f(a), f(b));
        }
        if let (Some(a), Some(b)) = (self.eval.kmeans_nmi, self.random_init.kmeans_nmi) {
            let _ = writeln!(
                s,
                "{:<34} {a:>9.3} {b:>12.3}",
                "k-means NMI, test fused features"
            );
        }
        if let (Some(first), Some(last)) = (self.clustering.nmi.first(), self.clustering.nmi.last())
        {
            let _ = writeln!(
                s,
                "pseudo-label NMI, first → last round: {first:.3} → {last:.3} ({} rounds{})",
                self.clustering.nmi.len(),
                self.clustering
                    .terms_from_epoch
                    .map_or(String::new(), |e| format!(", cluster terms from epoch {e}"))
            );
        }
        let _ = writeln!(s, "{} epochs in {:.0} s", self.epochs, self.seconds);
        s
    }
}

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
    // The total, then every loss term any epoch logged (L_ins first).
    let mut names: Vec<String> = Vec::new();
    for h in history {
        for (name, _) in h.loss_terms() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.sort_by_key(|n| (n != "L_ins", n.clone()));
    let mut losses = vec![Series {
        name: "total",
        points: ep(&|h| Some(h.loss)),
    }];
    for name in &names {
        let term = format!("l_{}", name.trim_start_matches("L_"));
        losses.push(Series {
            name,
            points: ep(&|h| h.term(&term)),
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

fn render_report(s: &Summary) -> String {
    let mut r = String::new();
    let _ = writeln!(r, "# diccae-engine run report\n");
    let _ = writeln!(
        r,
        "Method **{}**, preset **{}**, data: {} ({} train / {} test clips, {} skipped), {} epochs, {:.0} s, {} parameters.\n",
        s.method,
        s.preset,
        s.dataset,
        s.train_clips,
        s.test_clips,
        s.skipped_clips,
        s.epochs,
        s.seconds,
        s.parameters
    );
    let _ = writeln!(r, "## Results (test split)\n\n```text\n{}```\n", s.table());
    let pct = |v: f64| format!("{:.1}%", 100.0 * v);
    if let Some(p) = s.eval.linear_probe {
        let _ = writeln!(r, "| linear probe | top-1 | top-5 |\n|---|---|---|");
        for (n, t) in [("audio", p.audio), ("video", p.video), ("fused", p.fused)] {
            let _ = writeln!(r, "| {n} | {} | {} |", pct(t.top1), pct(t.top5));
        }
        let _ = writeln!(r);
    } else {
        let _ = writeln!(r, "The data has no labels: probes and kNN were not run.\n");
    }
    let rt = s.eval.retrieval;
    let _ = writeln!(r, "| retrieval | R@1 | R@5 | R@10 |\n|---|---|---|---|");
    for (n, x) in [
        ("audio → video", rt.audio_to_video),
        ("video → audio", rt.video_to_audio),
    ] {
        let _ = writeln!(
            r,
            "| {n} | {} | {} | {} |",
            pct(x.r1),
            pct(x.r5),
            pct(x.r10)
        );
    }
    let _ = writeln!(r);
    if !s.eval.most_confused.is_empty() {
        let _ = writeln!(
            r,
            "## Most confused class pairs (fused probe)\n\n| pair | confusion rate | pair accuracy |\n|---|---|---|"
        );
        for p in &s.eval.most_confused {
            let _ = writeln!(
                r,
                "| {} | {} | {} |",
                p.names,
                pct(p.confusion_rate),
                pct(p.pair_accuracy)
            );
        }
        let _ = writeln!(r);
    }
    if !s.eval.known_pairs.is_empty() {
        let _ = writeln!(
            r,
            "## Known confusable pairs\n\n| pair | pair accuracy | random init |\n|---|---|---|"
        );
        for (i, p) in s.eval.known_pairs.iter().enumerate() {
            let base = s
                .random_init
                .known_pairs
                .get(i)
                .map_or("-".into(), |b| pct(b.pair_accuracy));
            let _ = writeln!(r, "| {} | {} | {base} |", p.names, pct(p.pair_accuracy));
        }
        let _ = writeln!(r);
    }
    if !s.clustering.epochs.is_empty() {
        let _ = writeln!(
            r,
            "## Clustering rounds\n\nRounds before the cluster terms start only observe: their pseudo-labels train nothing.\n\n| epoch | cluster terms | NMI | ARI | Hungarian acc. | purity | size entropy |\n|---|---|---|---|---|---|---|"
        );
        for i in 0..s.clustering.epochs.len() {
            let g = |v: &Vec<f64>| v.get(i).map_or("-".into(), |x| format!("{x:.3}"));
            let epoch = s.clustering.epochs[i];
            let terms = match s.clustering.terms_from_epoch {
                Some(from) if epoch >= from => "training",
                _ => "observed",
            };
            let _ = writeln!(
                r,
                "| {epoch} | {terms} | {} | {} | {} | {} | {} |",
                g(&s.clustering.nmi),
                g(&s.clustering.ari),
                g(&s.clustering.accuracy),
                g(&s.clustering.purity),
                g(&s.clustering.size_entropy)
            );
        }
        let _ = writeln!(r);
    } else if s.method == "avcl" {
        let _ = writeln!(
            r,
            "AVCL trains without clustering rounds (SelfCL + cross-modal L_ins + CGRA).\n"
        );
    } else {
        let _ = writeln!(
            r,
            "No clustering round ran (the cluster terms were off, or L_ins never left chance).\n"
        );
    }
    if let Some(w) = s.weights {
        let _ = writeln!(
            r,
            "Final W: largest off-diagonal {:.3}, mean off-diagonal {:.3}.\n",
            w.max, w.mean_offdiag
        );
    }
    let _ = writeln!(r, "## Plots\n\n![losses](plots/losses.png)\n");
    if !s.clustering.epochs.is_empty() {
        let _ = writeln!(r, "![clustering](plots/clustering.png)\n");
    }
    if !s.eval.confusion_matrix.is_empty() {
        let _ = writeln!(r, "![confusion](plots/confusion.png)\n");
    }
    if s.weight_matrix.is_some() {
        let _ = writeln!(r, "![W](plots/weights.png)\n");
    }
    r
}
