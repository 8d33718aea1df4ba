//! What an evaluation measured (METHOD.md §5): probe, kNN and retrieval
//! scores, confusion diagnostics. `train::evaluate` fills them; the report
//! and `summary.json` show them.

use serde::{Deserialize, Serialize};

/// Top-1 and top-5 accuracy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TopK {
    /// Top-1 accuracy in [0, 1].
    pub top1: f64,
    /// Top-5 accuracy in [0, 1].
    pub top5: f64,
}

/// Linear-probe accuracy per feature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeScores {
    /// On pooled audio tokens `h_a`.
    pub audio: TopK,
    /// On pooled video tokens `h_v`.
    pub video: TopK,
    /// On pooled fused tokens `h_f`.
    pub fused: TopK,
}

/// kNN top-1 accuracy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KnnScores {
    /// On `h_f`.
    pub fused: KnnTop1,
}

/// One top-1 figure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KnnTop1 {
    /// Top-1 accuracy in [0, 1].
    pub top1: f64,
}

/// Recall at 1, 5 and 10.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Recall {
    /// R@1.
    pub r1: f64,
    /// R@5.
    pub r5: f64,
    /// R@10.
    pub r10: f64,
}

/// Cross-modal retrieval on the test split (a clip's own other modality is the match).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RetrievalScores {
    /// Audio queries, video candidates.
    pub audio_to_video: Recall,
    /// Video queries, audio candidates.
    pub video_to_audio: Recall,
}

/// A pair of classes and how the fused probe mixes them up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairScore {
    /// First class index.
    pub a: usize,
    /// Second class index.
    pub b: usize,
    /// `name(a) / name(b)`.
    pub names: String,
    /// Fraction of the two classes' test clips predicted as the other one.
    pub confusion_rate: f64,
    /// Among test clips of either class predicted as either class, the
    /// fraction predicted correctly (1 = never mixed up).
    pub pair_accuracy: f64,
}

/// Everything an evaluation measured. Absent fields need labels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Linear probes (labelled data only).
    pub linear_probe: Option<ProbeScores>,
    /// kNN (labelled data only).
    pub knn: Option<KnnScores>,
    /// Retrieval R@k.
    pub retrieval: RetrievalScores,
    /// The most confused class pairs of the fused probe, worst first.
    pub most_confused: Vec<PairScore>,
    /// The dataset's known confusable pairs (built-in data).
    pub known_pairs: Vec<PairScore>,
    /// Mean pair accuracy over the known confusable pairs.
    pub known_pairs_accuracy: Option<f64>,
    /// Row-normalised confusion matrix `[C, C]` of the fused probe on the test split.
    pub confusion_matrix: Vec<f64>,
    /// NMI against the true labels of k-means (K = classes) on the test
    /// split's normalised fused features: how well the classes cluster,
    /// comparable across variants whether or not they clustered in training.
    pub kmeans_nmi: Option<f64>,
}
