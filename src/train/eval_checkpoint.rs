//! `diccae-engine eval`: a saved checkpoint's encoder evaluated on a
//! dataset, with the same outputs as a training run's.

use std::path::Path;
use std::time::Instant;

use crate::autograd::ParamStore;
use crate::checkpoint;
use crate::config::Config;
use crate::device::{OnBackend, Opened};
use crate::error::{Error, Result};
use crate::model::AvModel;
use crate::ops::Backend;
use crate::optim::{AdamW, AdamWConfig};
use crate::report::outputs::write_outputs;
use crate::report::summary::Summary;
use crate::train::console::Console;
use crate::train::evaluate::evaluate_model;
use crate::train::features;
use crate::train::objective::{self, Plan};
use crate::train::run_dir::report_dataset;
use crate::train::run_state;
use crate::train::summary::summarise;

/// Evaluates a saved checkpoint: `path` is a run directory, its
/// `checkpoints/` directory, or one checkpoint's directory. The data is
/// `data` (a manifest) or the built-in dataset of the stored configuration;
/// results go to `out` like a training run's. The encoder runs on `backend`.
pub fn evaluate_checkpoint(
    path: &Path,
    data: Option<&Path>,
    overrides: &[String],
    out: &Path,
    quiet: bool,
    backend: &Opened,
) -> Result<Summary> {
    backend.run(EvalJob {
        path,
        data,
        overrides,
        out,
        quiet,
    })
}

/// The arguments of [`evaluate_checkpoint`], run on the opened backend.
struct EvalJob<'a> {
    path: &'a Path,
    data: Option<&'a Path>,
    overrides: &'a [String],
    out: &'a Path,
    quiet: bool,
}

impl OnBackend for EvalJob<'_> {
    type Output = Summary;
    fn run<B: Backend>(self, backend: B) -> Result<Summary> {
        evaluate_checkpoint_on(backend, &self)
    }
}

fn evaluate_checkpoint_on<B: Backend>(backend: B, job: &EvalJob<'_>) -> Result<Summary> {
    let (path, data, out) = (job.path, job.data, job.out);
    let console = Console::new(job.quiet);
    let started = Instant::now();
    let dir = if path.join("checkpoints").is_dir() {
        path.join("checkpoints")
    } else {
        path.to_path_buf()
    };
    let ckpt = checkpoint::load(&dir)?;
    let text = ckpt.state["config"].as_str().ok_or_else(|| {
        Error::Training(format!(
            "{}: the checkpoint holds no configuration",
            dir.display()
        ))
    })?;
    let stored = Config::from_toml(text)?;
    let cfg = stored.with_eval_overrides(job.overrides)?;
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.display().to_string(),
        detail: format!("cannot create the output directory: {e}"),
    })?;
    let dataset = features::load(&cfg, data)?;
    report_dataset(console, out, &dataset)?;
    let mut store = ParamStore::new(backend);
    let model = AvModel::for_config(&mut store, &cfg)?;
    console.say("evaluating the randomly initialised encoder (reference point)");
    let random_init = evaluate_model(&model, &store, &dataset, &cfg)?;
    // The objective is rebuilt only to restore its state for the summary
    // (the pseudo-labels of the run's own training data); one that cannot
    // be built for this data (clusters per class on unlabelled data) is left
    // out of the summary.
    let plan = Plan::new(&stored, dataset.train.len());
    let mut obj = objective::for_config::<B>(&stored, &plan, &dataset).ok();
    let state = run_state::restore(
        &ckpt,
        &mut store,
        &mut AdamW::new(AdamWConfig::default()),
        obj.as_deref_mut(),
        // Evaluation may use other data than the run's, so the run's epoch
        // count is not known here: no bound.
        (&stored, usize::MAX),
    )?;
    console.say(format!(
        "evaluating {} (after epoch {})",
        dir.display(),
        state.epochs_done
    ));
    let eval = evaluate_model(&model, &store, &dataset, &cfg)?;
    let summary = summarise(
        &cfg,
        &dataset,
        eval,
        random_init,
        obj.map(|o| o.report(&state.history)).unwrap_or_default(),
        &state.history,
        started.elapsed().as_secs_f64(),
        store.numel(),
    );
    write_outputs(out, &summary, &state.history)?;
    Ok(summary)
}
