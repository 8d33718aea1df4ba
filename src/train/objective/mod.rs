//! Training methods behind one trait. The loop (`train::trainer`) knows
//! nothing of DICCAE or AVCL: it gathers batches as the objective asks, runs
//! the model, takes the objective's loss, steps the optimiser and calls the
//! objective's hooks at the start and end of each epoch and after each step.
//!
//! A new method is a file here implementing [`Objective`], an arm in
//! [`for_config`], its variant of [`crate::config::Method`] with its config
//! section, and its notes in `docs/METHOD-NOTES.md`.

pub mod avcl;
pub mod diccae;

use std::collections::BTreeMap;

use crate::autograd::{ParamStore, Tape, Var};
use crate::checkpoint::{Checkpoint, HostTensor};
use crate::config::{Config, Method};
use crate::data::augment::AugmentConfig;
use crate::error::Result;
use crate::model::{AvModel, Embeddings};
use crate::ops::Backend;
use crate::report::record::{EpochRecord, TermSums, Terms};
use crate::report::summary::ObjectiveReport;
use crate::train::console::Console;
use crate::train::features::{Dataset, InputShapes};
use crate::train::metrics_log::MetricsLog;

/// How the loop builds a batch's inputs from its clips.
#[derive(Clone, Debug)]
pub enum Views {
    /// One view per clip, its frames mirrored with probability ½.
    Flipped,
    /// Two augmented views per clip: rows `0..n` view 1, `n..2n` view 2.
    Augmented(AugmentConfig),
}

impl Views {
    /// Rows per clip in the model's batch.
    pub fn count(&self) -> usize {
        match self {
            Views::Flipped => 1,
            Views::Augmented(_) => 2,
        }
    }
}

/// The shape of a run: its batch size, steps per epoch and epochs.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Clips per step.
    pub batch: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// Epochs of the whole run.
    pub epochs: usize,
}

impl Plan {
    /// The plan of `cfg` on a training split of `train_clips` clips.
    pub fn new(cfg: &Config, train_clips: usize) -> Self {
        let batch = cfg.train.batch_size.min(train_clips).max(1);
        Plan {
            batch,
            steps_per_epoch: train_clips / batch,
            epochs: cfg.epochs_for(train_clips),
        }
    }
}

/// What an epoch hook may read: the model, its parameters and the data.
pub struct RunContext<'a, B: Backend> {
    /// The model.
    pub model: &'a AvModel,
    /// One clip's input shapes.
    pub shapes: &'a InputShapes,
    /// Its parameters.
    pub store: &'a ParamStore<B>,
    /// Both splits.
    pub dataset: &'a Dataset,
    /// The run's batch size, steps and epochs.
    pub plan: Plan,
}

/// Where an objective reports: `metrics.jsonl` and the console.
pub struct RunLog<'a> {
    /// The run's `metrics.jsonl`.
    pub metrics: &'a mut MetricsLog,
    /// The console (progress lines unless quiet).
    pub console: Console,
}

/// A batch of clips as the model will see it.
pub struct Batch {
    /// Training-set index of each clip.
    pub idx: Vec<usize>,
    /// Audio inputs, `views × clips` rows.
    pub audio: Vec<f32>,
    /// Video inputs, `views × clips` rows.
    pub video: Vec<f32>,
}

/// How a step's gradient reaches the parameters.
pub enum Backward<B: Backend> {
    /// From a loss on the model's tape.
    Of(Var),
    /// From gradients the objective computed at some of the model's outputs
    /// (DICCAE computes its terms on a tape of their own).
    From(Vec<(Var, B::Buf)>),
}

/// One step's loss, its logged values and its gradient source.
pub struct StepLoss<B: Backend> {
    /// The total loss (a non-finite value rejects the step).
    pub loss: f64,
    /// Named values to average over the epoch (`l_*` are loss terms).
    pub logged: Vec<(&'static str, f64)>,
    /// Where the gradient comes from.
    pub backward: Backward<B>,
}

/// A training method: what it needs from a batch, its loss for a step and
/// its hooks per step and per epoch, and what it keeps in a checkpoint.
pub trait Objective<B: Backend> {
    /// How batches are built.
    fn views(&self) -> Views;

    /// Start of `epoch` (0-based), before its first step: clustering rounds,
    /// the epoch's term weights.
    fn begin_epoch(
        &mut self,
        _run: &RunContext<'_, B>,
        _epoch: usize,
        _log: &mut RunLog<'_>,
    ) -> Result<()> {
        Ok(())
    }

    /// Reorders a batch before it reaches the model.
    fn arrange(&mut self, batch: Batch) -> Batch {
        batch
    }

    /// The loss of a step on the model's outputs `e` for the clips `idx`.
    fn step_loss(
        &mut self,
        store: &ParamStore<B>,
        tape: &mut Tape<'_, B>,
        e: &Embeddings,
        idx: &[usize],
    ) -> Result<StepLoss<B>>;

    /// After the optimiser applied the step's gradient.
    fn after_step(&mut self, _backend: &B) -> Result<()> {
        Ok(())
    }

    /// End of the epoch: updates the objective's state and returns the
    /// epoch record's terms from the sums of the steps' logged values.
    fn end_epoch(&mut self, backend: &B, sums: &TermSums) -> Result<Terms>;

    /// After the epoch's record is complete (`record.epoch` = the epoch).
    fn epoch_logged(&mut self, _record: &EpochRecord, _log: &mut RunLog<'_>) -> Result<()> {
        Ok(())
    }

    /// Adds the objective's state to a checkpoint: tensors and top-level
    /// `state.json` keys.
    fn save(
        &self,
        _tensors: &mut BTreeMap<String, HostTensor>,
        _state: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<()> {
        Ok(())
    }

    /// Restores what [`Objective::save`] wrote.
    fn restore(&mut self, _backend: &B, _ckpt: &Checkpoint) -> Result<()> {
        Ok(())
    }

    /// What the objective adds to the run's summary, given the epoch
    /// history (clustering methods: rounds and W).
    fn report(&self, _history: &[EpochRecord]) -> ObjectiveReport {
        ObjectiveReport::default()
    }
}

/// The objective `cfg.method` names, for a run of shape `plan` on `dataset`.
pub fn for_config<B: Backend>(
    cfg: &Config,
    plan: &Plan,
    dataset: &Dataset,
) -> Result<Box<dyn Objective<B>>> {
    Ok(match cfg.method {
        Method::Diccae => Box::new(diccae::Diccae::new(cfg, plan, dataset)?),
        Method::Avcl => Box::new(avcl::Avcl::new(cfg)),
    })
}
