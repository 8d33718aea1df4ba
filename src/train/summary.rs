//! A run's summary from what the run measured (`report::summary::Summary`).

use crate::config::Config;
use crate::eval::scores::Evaluation;
use crate::report::record::EpochRecord;
use crate::report::summary::{ObjectiveReport, Summary};
use crate::train::features::Dataset;

/// Collects a run's results: the final and random-init evaluations on
/// `data`, what the objective reports, and the epoch history.
#[allow(clippy::too_many_arguments)]
pub fn summarise(
    cfg: &Config,
    data: &Dataset,
    eval: Evaluation,
    random_init: Evaluation,
    objective: ObjectiveReport,
    history: &[EpochRecord],
    seconds: f64,
    parameters: usize,
) -> Summary {
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
        clustering: objective.clustering,
        weights: objective.weights,
        weight_matrix: objective.weight_matrix,
    }
}
