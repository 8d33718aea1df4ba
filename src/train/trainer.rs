//! The pretraining loop, the same for every method: batches gathered on a
//! background thread as the objective asks (`train::objective`), the model's
//! forward pass, the objective's loss, backward, gradient clipping and AdamW;
//! non-finite steps rejected; a checkpoint every epoch; evaluation at the
//! end. The objective's hooks run at the start and end of each epoch and
//! after each step.

use std::path::PathBuf;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use serde_json::json;

use crate::autograd::{ParamStore, Tape};
use crate::checkpoint;
use crate::config::Config;
use crate::device::{OnBackend, Opened};
use crate::error::{Error, Result};
use crate::model::AvModel;
use crate::ops::Backend;
use crate::optim::{AdamW, AdamWConfig, WarmupCosine, clip_grad_norm};
use crate::report::outputs::write_outputs;
use crate::report::record::{EpochRecord, TermSums, display_name};
use crate::report::summary::Summary;
use crate::rng::seeded;
use crate::tensor::Tensor;
use crate::train::console::Console;
use crate::train::evaluate::evaluate_model;
use crate::train::features::{self, Dataset, InputShapes};
use crate::train::metrics_log::MetricsLog;
use crate::train::objective::{self, Backward, Batch, Objective, Plan, RunContext, RunLog, Views};
use crate::train::run_dir::{self, DataIdentity};
use crate::train::run_state::{self, RunState, SaveContext};
use crate::train::summary::summarise;

/// How to run `train`.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The run directory (created if needed).
    pub out: PathBuf,
    /// A manifest file or directory; `None` = the built-in synthetic data.
    pub data: Option<PathBuf>,
    /// Continue from the run directory's latest checkpoint.
    pub resume: bool,
    /// Print nothing but errors (used by `ablate`).
    pub quiet: bool,
    /// Replace a run already in `out` (its checkpoints, logs and reports)
    /// instead of refusing to train over it.
    pub overwrite: bool,
}

/// A finished run.
#[derive(Debug)]
pub struct TrainOutcome {
    /// What the final evaluation measured.
    pub summary: Summary,
    /// Where everything was written.
    pub run_dir: PathBuf,
}

/// Makes a run's objective once its configuration, plan and data are known.
pub type MakeObjective<'a, B> =
    dyn Fn(&Config, &Plan, &Dataset) -> Result<Box<dyn Objective<B>>> + 'a;

/// Trains and evaluates as `cfg` says on `backend` (from
/// [`crate::device::resolve`], or [`Opened::cpu`]) with the
/// objective `cfg.method` names; see [`TrainOptions`].
pub fn train(cfg: &Config, opts: &TrainOptions, backend: &Opened) -> Result<TrainOutcome> {
    struct Job<'a>(&'a Config, &'a TrainOptions);
    impl OnBackend for Job<'_> {
        type Output = TrainOutcome;
        fn run<B: Backend>(self, backend: B) -> Result<TrainOutcome> {
            train_with(backend, self.0, self.1, &objective::for_config)
        }
    }
    backend.run(Job(cfg, opts))
}

/// [`train`] with the objective `make` builds, on `backend`.
pub fn train_with<B: Backend>(
    backend: B,
    cfg: &Config,
    opts: &TrainOptions,
    make: &MakeObjective<'_, B>,
) -> Result<TrainOutcome> {
    let started = Instant::now();
    let (out, console) = (&opts.out, Console::new(opts.quiet));
    let resume_from = run_dir::prepare(out, opts.resume, opts.overwrite, console)?;
    let dataset = features::load(cfg, opts.data.as_deref())?;
    if dataset.train.len() < 2 {
        return Err(Error::Training(format!(
            "{} has {} usable training clips; contrastive learning needs at least 2",
            dataset.name,
            dataset.train.len()
        )));
    }
    let identity = DataIdentity::of(opts.data.as_deref())?;
    let mut store = ParamStore::new(backend.clone());
    let model = AvModel::for_config(&mut store, cfg)?;
    let plan = Plan::new(cfg, dataset.train.len());
    let mut objective = make(cfg, &plan, &dataset)?;
    let t = &cfg.train;
    let mut opt = AdamW::new(AdamWConfig {
        beta1: t.beta1,
        beta2: t.beta2,
        eps: 1e-8,
        weight_decay: t.weight_decay,
    });
    let mut state = RunState::default();
    if let Some(path) = &resume_from {
        let ckpt = checkpoint::load(path)?;
        identity.check_resume(&ckpt.state)?;
        let at = (cfg, plan.epochs);
        state = run_state::restore(&ckpt, &mut store, &mut opt, Some(objective.as_mut()), at)?;
        let done = state.epochs_done;
        console.say(format!(
            "resumed from {} after epoch {done}",
            path.display()
        ));
    }
    // Written only now, once a resume has been checked: a refused resume
    // leaves the run directory as it was.
    run_dir::report_dataset(console, out, &dataset)?;
    crate::atomic_file::write_atomic(&out.join("config.toml"), cfg.to_toml()?.as_bytes())?;
    let metrics = MetricsLog::open(&out.join("metrics.jsonl"), state.epochs_done)?;
    let n_params = store.numel();
    console.say(format!(
        "model: {n_params} parameters ({} tensors), backend {} with {} threads",
        store.len(),
        backend.name(),
        rayon::current_num_threads()
    ));
    if state.random_init.is_none() {
        console.say("evaluating the randomly initialised encoder (reference point)");
        state.random_init = Some(evaluate_model(&model, &store, &dataset, cfg)?);
    }
    let steps = plan.steps_per_epoch;
    let mut run = Loop {
        cfg,
        console,
        backend: &backend,
        model: &model,
        shapes: InputShapes::of(cfg),
        dataset: &dataset,
        plan,
        sched: WarmupCosine {
            peak: t.lr,
            floor: t.min_lr,
            warmup: (t.warmup_epochs * steps as f32) as u64,
            total: (steps * plan.epochs) as u64,
        },
        store,
        opt,
        objective,
        metrics,
        state,
        consecutive_bad: 0,
        ckpt_dir: out.join("checkpoints"),
    };
    for epoch in run.state.epochs_done..plan.epochs {
        let record = run.epoch(epoch)?;
        run.state.history.push(record);
        run.state.epochs_done = epoch + 1;
        let ctx = SaveContext {
            opt: &run.opt,
            objective: run.objective.as_ref(),
            cfg,
            data: &identity,
        };
        let seconds = started.elapsed().as_secs_f64();
        run_state::save(&run.ckpt_dir, &run.store, &ctx, &run.state, seconds)?;
    }
    console.say("evaluating the pretrained encoder");
    let final_eval = evaluate_model(&model, &run.store, &dataset, cfg)?;
    let summary = summarise(
        cfg,
        &dataset,
        final_eval,
        run.state.random_init.clone().unwrap_or_default(),
        run.objective.report(&run.state.history),
        &run.state.history,
        run.state.seconds + started.elapsed().as_secs_f64(),
        n_params,
    );
    run.metrics
        .write(&json!({ "kind": "summary", "summary": &summary }))?;
    write_outputs(out, &summary, &run.state.history)?;
    Ok(TrainOutcome {
        summary,
        run_dir: out.clone(),
    })
}

/// Everything the epochs of a run share.
struct Loop<'a, B: Backend> {
    cfg: &'a Config,
    console: Console,
    backend: &'a B,
    model: &'a AvModel,
    shapes: InputShapes,
    dataset: &'a Dataset,
    plan: Plan,
    sched: WarmupCosine,
    store: ParamStore<B>,
    opt: AdamW<B>,
    objective: Box<dyn Objective<B>>,
    metrics: MetricsLog,
    state: RunState,
    consecutive_bad: usize,
    ckpt_dir: PathBuf,
}

/// Sums of one epoch's steps.
struct EpochSums {
    started: Instant,
    terms: TermSums,
    loss: f64,
    grad_norm: f64,
    clips: usize,
    rejected: usize,
    lr: f32,
}

fn with_batch(n: usize, shape: &[usize]) -> Vec<usize> {
    let mut s = vec![n];
    s.extend_from_slice(shape);
    s
}

fn progress_bar(console: Console, steps: usize, epoch: usize) -> ProgressBar {
    let b = console.progress_bar(steps);
    b.set_style(
        ProgressStyle::with_template("epoch {prefix:>3} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_prefix(format!("{}", epoch + 1));
    b
}

impl<B: Backend> Loop<'_, B> {
    /// Trains one epoch and returns its record.
    fn epoch(&mut self, epoch: usize) -> Result<EpochRecord> {
        let epoch_start = Instant::now();
        let ctx = RunContext {
            model: self.model,
            shapes: &self.shapes,
            store: &self.store,
            dataset: self.dataset,
            plan: self.plan,
        };
        let mut log = RunLog {
            metrics: &mut self.metrics,
            console: self.console,
        };
        self.objective.begin_epoch(&ctx, epoch, &mut log)?;
        let (t, plan) = (&self.cfg.train, self.plan);
        let mut order: Vec<usize> = (0..self.dataset.train.len()).collect();
        order.shuffle(&mut seeded(
            t.seed.wrapping_mul(31).wrapping_add(epoch as u64 + 1),
        ));
        let bar = progress_bar(self.console, plan.steps_per_epoch, epoch);
        let mut sums = EpochSums {
            started: epoch_start,
            terms: TermSums::default(),
            loss: 0.0,
            grad_norm: 0.0,
            clips: 0,
            rejected: 0,
            lr: 0.0,
        };
        let (train_set, data_cfg) = (&self.dataset.train, &self.cfg.data);
        let views = self.objective.views();
        std::thread::scope(|scope| -> Result<()> {
            // Batches are gathered (and augmented) on a background thread.
            let (tx, rx) = sync_channel(2);
            let seed = t.seed ^ 0xa5a5 ^ ((epoch as u64) << 20);
            let (order, views) = (&order, &views);
            scope.spawn(move || {
                let mut rng = seeded(seed);
                for chunk in order.chunks(plan.batch).take(plan.steps_per_epoch) {
                    let item = match views {
                        Views::Augmented(aug) => {
                            train_set.gather_views(chunk, data_cfg, aug, &mut rng)
                        }
                        Views::Flipped => {
                            Ok(train_set.gather(chunk, data_cfg.frame_size, Some(&mut rng)))
                        }
                    };
                    let batch = item.map(|(audio, video)| Batch {
                        idx: chunk.to_vec(),
                        audio,
                        video,
                    });
                    if tx.send(batch).is_err() {
                        break;
                    }
                }
            });
            for batch in rx {
                self.step(batch?, views.count(), epoch, &mut sums, &bar)?;
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        if sums.terms.steps == 0 {
            return Err(Error::Training(format!(
                "epoch {} completed no step",
                epoch + 1
            )));
        }
        let terms = self.objective.end_epoch(self.backend, &sums.terms)?;
        let s = sums.terms.steps as f64;
        let seconds = epoch_start.elapsed().as_secs_f64();
        let record = EpochRecord {
            epoch,
            loss: sums.loss / s,
            terms,
            lr: sums.lr,
            grad_norm: sums.grad_norm / s,
            rejected_steps: sums.rejected,
            clips_per_second: sums.clips as f64 / seconds.max(1e-9),
            seconds,
        };
        let shown: String = record
            .loss_terms()
            .iter()
            .map(|(key, v)| format!("  {} {v:.4}", display_name(key)))
            .collect();
        self.console.say(format!(
            "epoch {:>3}/{}: loss {:.4}{shown}  lr {:.2e}  {:.0} clips/s  {seconds:.1}s",
            epoch + 1,
            plan.epochs,
            record.loss,
            record.lr,
            record.clips_per_second,
        ));
        self.metrics
            .write(&json!({ "kind": "epoch", "record": &record }))?;
        let mut log = RunLog {
            metrics: &mut self.metrics,
            console: self.console,
        };
        self.objective.epoch_logged(&record, &mut log)?;
        Ok(record)
    }

    /// One training step on `batch` (`views` model rows per clip).
    fn step(
        &mut self,
        batch: Batch,
        views: usize,
        epoch: usize,
        sums: &mut EpochSums,
        bar: &ProgressBar,
    ) -> Result<()> {
        let lr = self.sched.lr(self.state.steps_done);
        sums.lr = lr;
        let batch = self.objective.arrange(batch);
        let n = batch.idx.len();
        let be = self.backend;
        let mut tape = Tape::new(&self.store);
        let audio_shape = with_batch(n * views, &self.shapes.audio);
        let a = tape.constant(Tensor::from_host(be, &audio_shape, &batch.audio)?);
        let video_shape = with_batch(n * views, &self.shapes.video);
        let v = tape.constant(Tensor::from_host(be, &video_shape, &batch.video)?);
        let e = self.model.forward(&mut tape, a, v)?;
        let step = self
            .objective
            .step_loss(&self.store, &mut tape, &e, &batch.idx)?;
        if !step.loss.is_finite() {
            drop(tape);
            return self.reject(format!("loss is {}", step.loss), epoch, sums, bar);
        }
        let mut grads = match step.backward {
            Backward::Of(total) => tape.backward(total)?,
            Backward::From(seeds) => tape.backward_from(seeds)?,
        };
        drop(tape);
        let norm = clip_grad_norm(&self.store, &mut grads, self.cfg.train.grad_clip)?;
        if !norm.is_finite() {
            return self.reject(format!("gradient norm is {norm}"), epoch, sums, bar);
        }
        self.consecutive_bad = 0;
        self.opt.step(&mut self.store, &grads, lr)?;
        self.objective.after_step(be)?;
        self.state.steps_done += 1;
        sums.terms.add_step(&step.logged);
        sums.clips += n;
        sums.loss += step.loss;
        sums.grad_norm += norm;
        let shown: Vec<String> = step
            .logged
            .iter()
            .filter(|(name, _)| name.starts_with("l_"))
            .map(|(name, v)| format!("{} {v:.4}", display_name(name)))
            .collect();
        let rate = sums.clips as f64 / sums.started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "loss {:.4} ({}) {rate:.0} clips/s",
            step.loss,
            shown.join(", ")
        ));
        bar.inc(1);
        Ok(())
    }

    /// Skips a non-finite step; five in a row end the run.
    fn reject(
        &mut self,
        reason: String,
        epoch: usize,
        sums: &mut EpochSums,
        bar: &ProgressBar,
    ) -> Result<()> {
        sums.rejected += 1;
        self.consecutive_bad += 1;
        let step = self.state.steps_done;
        self.metrics.write(
            &json!({ "kind": "rejected_step", "epoch": epoch, "step": step, "reason": reason }),
        )?;
        bar.suspend(|| {
            eprintln!(
                "warning: epoch {} step {step}: {reason}; step skipped",
                epoch + 1
            )
        });
        if self.consecutive_bad >= 5 {
            return Err(Error::Training(format!(
                "5 consecutive steps were non-finite at epoch {} (last: {reason}); the last good checkpoint is kept in {}; try a lower train.lr (now {})",
                epoch + 1,
                self.ckpt_dir.display(),
                self.cfg.train.lr
            )));
        }
        Ok(())
    }
}
