//! The results of a run as `summary.json` holds them, and the plain-text
//! table printed at the end of `train`.
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

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::eval::scores::Evaluation;

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

/// What the objective adds to a run's summary (clustering methods: their
/// rounds and final W).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectiveReport {
    /// Pseudo-label quality per round.
    pub clustering: ClusteringSummary,
    /// Statistics of the final W, when the confusion-aware loss ran.
    pub weights: Option<WeightSummary>,
    /// The final W `[K, K]`, for its plot.
    pub weight_matrix: Option<(usize, Vec<f32>)>,
}

impl Summary {
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
