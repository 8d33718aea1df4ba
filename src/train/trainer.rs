//! The pretraining loop. DICCAE (METHOD.md §3): instance contrast from the
//! start; once the instance loss has left chance, periodic k-means on the
//! fused embeddings, class-level alignment and the confusion-aware loss with
//! ramped weights. AVCL (METHOD.md §4): two augmented views of every clip
//! through the model, SelfCL between the views' fused embeddings, the
//! cross-modal L_ins and CGRA on the encoders' tokens. Both: a checkpoint
//! every epoch, non-finite steps rejected, evaluation at the end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::autograd::{ParamStore, Tape, Var};
use crate::backend::Backend;
use crate::backend::device::{OnBackend, Opened};
use crate::checkpoint::{self, Checkpoint, HostTensor};
use crate::config::{AvclConfig, ClusterSpace, Config, Method};
use crate::confusion::ramp;
use crate::error::{Error, Result};
use crate::kmeans::KMeansConfig;
use crate::model::{AvModel, Embeddings};
use crate::ops::cgra::cgra_loss;
use crate::ops::elementwise::{add, scale};
use crate::ops::infonce::infonce;
use crate::ops::tokens::{reshape, split_tokens};
use crate::optim::{AdamW, AdamWConfig, WarmupCosine, clip_grad_norm};
use crate::rng::seeded;
use crate::tensor::Tensor;
use crate::train::clusters::{ClusterSnapshot, ClusterState, MODALITIES, RoundInput, joint_space};
use crate::train::diccae_terms::{ClusterBatch, TermWeights, diccae_terms};
use crate::train::embed::embed_split;
use crate::train::evaluate::{Evaluation, evaluate};
use crate::train::features::{self, Dataset};
use crate::train::metrics::MetricsLog;
use crate::train::summary::{Summary, write_outputs};

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

/// What a training run writes into its directory: a directory holding any
/// of these holds a run, which `train` continues only with `--resume` and
/// replaces only with `--overwrite`.
const RUN_FILES: [&str; 7] = [
    "checkpoints",
    "metrics.jsonl",
    "config.toml",
    "summary.json",
    "report.md",
    "plots",
    "skipped.txt",
];

/// The data a run trains on, recorded in its checkpoints so that `--resume`
/// refuses other data: the manifest as given and its size and CRC-32, or no
/// manifest for the built-in dataset (which the configuration determines).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct DataIdentity {
    manifest: Option<String>,
    bytes: u64,
    crc32: u32,
}

impl DataIdentity {
    /// The identity of `data` (a manifest file or a directory holding one).
    fn of(data: Option<&Path>) -> Result<Self> {
        let Some(given) = data else {
            return Ok(DataIdentity {
                manifest: None,
                bytes: 0,
                crc32: 0,
            });
        };
        let file = if given.is_dir() {
            given.join(crate::data::manifest::MANIFEST_FILE_NAME)
        } else {
            given.to_path_buf()
        };
        let bytes = std::fs::read(&file).map_err(|e| Error::Io {
            path: file.display().to_string(),
            detail: format!("cannot read the manifest: {e}"),
        })?;
        Ok(DataIdentity {
            manifest: Some(given.display().to_string()),
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(&bytes),
        })
    }

    /// Refuses to resume a run whose checkpoint `state` recorded other data
    /// than this (checkpoints from before the record are not checked).
    fn check_resume(&self, state: &serde_json::Value) -> Result<()> {
        let Some(saved) = state.get("data").filter(|v| !v.is_null()) else {
            return Ok(());
        };
        let saved: DataIdentity = serde_json::from_value(saved.clone()).map_err(|e| {
            Error::Training(format!("cannot resume: the checkpoint's data record: {e}"))
        })?;
        let refuse = |d: String| Err(Error::Training(format!("cannot resume: {d}")));
        match (&saved.manifest, &self.manifest) {
            (Some(m), None) => refuse(format!(
                "this run trained on {m}, not on the built-in data; resume with --data {m}"
            )),
            (None, Some(g)) => refuse(format!(
                "this run trained on the built-in data, not on {g}; resume without --data"
            )),
            (Some(m), Some(g)) if (saved.bytes, saved.crc32) != (self.bytes, self.crc32) => {
                refuse(format!(
                    "{g} ({} bytes, CRC-32 {:08x}) is not the manifest this run trained on ({m}: {} bytes, CRC-32 {:08x}); the run's pseudo-labels and data order index that manifest's clips, so resume with it, or start a new run",
                    self.bytes, self.crc32, saved.bytes, saved.crc32
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Means of one epoch's logged values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0-based epoch.
    pub epoch: usize,
    /// Total loss.
    pub loss: f64,
    /// Instance contrast L_ins (AVCL: the cross-modal term, mean of both views).
    pub l_ins: f64,
    /// AVCL: SelfCL InfoNCE between the two views' fused embeddings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l_selfcl: Option<f64>,
    /// AVCL: the CGRA alignment loss, when its weight is positive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l_cgra: Option<f64>,
    /// AVCL: weight of L_cgra this epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_cgra: Option<f32>,
    /// AVCL: mean AMFM gate α over the epoch's clips (1 = all audio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_mean: Option<f64>,
    /// Class-level alignment L_cls, when active.
    pub l_cls: Option<f64>,
    /// Confusion-aware loss L_conf, when active.
    pub l_conf: Option<f64>,
    /// Fused instance term L_fus, when it trained this epoch (`diccae.lambda_fused`
    /// positive, and with `diccae.fused_from_gate` once the gate has opened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l_fused: Option<f64>,
    /// Weight of L_cls this epoch.
    pub lambda_cls: f32,
    /// Weight of L_conf this epoch.
    pub lambda_conf: f32,
    /// Confusion boost β this epoch.
    pub beta: f32,
    /// Learning rate at the epoch's last step.
    pub lr: f32,
    /// Mean gradient norm before clipping.
    pub grad_norm: f64,
    /// With `diccae.cluster_grad_ratio` > 0: the mean factor the cap applied
    /// to the cluster terms' gradient over the steps they trained (1 = never
    /// capped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_grad_scale: Option<f64>,
    /// Steps rejected for a non-finite loss or gradient.
    pub rejected_steps: usize,
    /// Training throughput.
    pub clips_per_second: f64,
    /// Wall time of the epoch.
    pub seconds: f64,
}

/// Everything of a run's progress that is not a tensor.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct RunState {
    epochs_done: usize,
    steps_done: u64,
    gate_epoch: Option<usize>,
    history: Vec<EpochRecord>,
    random_init: Option<Evaluation>,
    seconds: f64,
}

/// A finished run.
#[derive(Debug)]
pub struct TrainOutcome {
    /// What the final evaluation measured.
    pub summary: Summary,
    /// Where everything was written.
    pub run_dir: PathBuf,
}

/// Accumulates one epoch's scalars.
#[derive(Default)]
struct EpochSums {
    steps: usize,
    loss: f64,
    l_ins: f64,
    l_cls: f64,
    l_conf: f64,
    l_fused: f64,
    l_selfcl: f64,
    l_cgra: f64,
    gate: f64,
    grad_norm: f64,
    cluster_scale: f64,
    cluster_steps: usize,
    clips: usize,
    rejected: usize,
}

/// The scalars one step logs.
#[derive(Default)]
struct StepScalars {
    loss: f64,
    ins: f64,
    cls: Option<f64>,
    conf: Option<f64>,
    fused: Option<f64>,
    selfcl: Option<f64>,
    cgra: Option<f64>,
    cluster_scale: Option<f64>,
}

/// How a step's gradient reaches the parameters.
enum Backward<B: Backend> {
    /// From a loss on the model's tape (AVCL).
    Of(Var),
    /// From the objective's gradients at the embeddings (DICCAE, whose terms
    /// are computed on a tape of their own: `train::diccae_terms`).
    From(Vec<(Var, B::Buf)>),
}

/// The shapes of one clip's inputs.
struct InputShapes {
    audio: Vec<usize>,
    video: Vec<usize>,
}

impl InputShapes {
    fn of(cfg: &Config) -> Self {
        let d = &cfg.data;
        InputShapes {
            audio: vec![d.n_mels, d.audio_frames],
            video: vec![d.frames, 3, d.frame_size, d.frame_size],
        }
    }
}

fn with_batch(n: usize, shape: &[usize]) -> Vec<usize> {
    let mut s = vec![n];
    s.extend_from_slice(shape);
    s
}

fn scalar<B: Backend>(be: &B, t: &Tensor<B>) -> Result<f64> {
    Ok(f64::from(
        t.to_host(be)?.first().copied().unwrap_or(f32::NAN),
    ))
}

/// Trains and evaluates as `cfg` says on `backend` (from
/// [`crate::backend::device::resolve`], or [`Opened::cpu`]); see
/// [`TrainOptions`]. The whole training step, clustering included, runs on
/// the backend; only logged scalars, the gradient norm, the batch's
/// embeddings for the prototype EMA, checkpoints and the evaluation's
/// embeddings come back to the host.
pub fn train(cfg: &Config, opts: &TrainOptions, backend: &Opened) -> Result<TrainOutcome> {
    struct Job<'a>(&'a Config, &'a TrainOptions);
    impl OnBackend for Job<'_> {
        type Output = TrainOutcome;
        fn run<B: Backend>(self, backend: B) -> Result<TrainOutcome> {
            train_on(backend, self.0, self.1)
        }
    }
    backend.run(Job(cfg, opts))
}

fn say(opts: &TrainOptions, line: impl AsRef<str>) {
    if !opts.quiet {
        println!("{}", line.as_ref());
    }
}

fn train_on<B: Backend>(backend: B, cfg: &Config, opts: &TrainOptions) -> Result<TrainOutcome> {
    let started = Instant::now();
    let out = &opts.out;
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.display().to_string(),
        detail: format!("cannot create the run directory: {e}"),
    })?;
    let ckpt_dir = out.join("checkpoints");
    let unfinished = checkpoint::remove_temporaries(&ckpt_dir)?;
    if unfinished > 0 {
        say(
            opts,
            format!(
                "removed {unfinished} unfinished checkpoint write(s) from {}",
                ckpt_dir.display()
            ),
        );
    }
    let resume_from = if opts.resume {
        Some(checkpoint::latest(&ckpt_dir)?.ok_or_else(|| {
            Error::Training(format!(
                "--resume: no checkpoint in {}; start the run without --resume",
                ckpt_dir.display()
            ))
        })?)
    } else {
        let held: Vec<&str> = RUN_FILES
            .iter()
            .copied()
            .filter(|f| out.join(f).exists())
            .collect();
        if !held.is_empty() && !opts.overwrite {
            return Err(Error::Training(format!(
                "{} already holds a run ({}); continue it with --resume, replace it with --overwrite, or choose another --out",
                out.display(),
                held.join(", ")
            )));
        }
        for f in held {
            let p = out.join(f);
            let removed = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            removed.map_err(|e| Error::Io {
                path: p.display().to_string(),
                detail: format!("--overwrite: cannot remove the old run's file: {e}"),
            })?;
        }
        None
    };
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
    let shapes = InputShapes::of(cfg);
    let t = &cfg.train;
    let mut opt = AdamW::new(AdamWConfig {
        beta1: t.beta1,
        beta2: t.beta2,
        eps: 1e-8,
        weight_decay: t.weight_decay,
    });
    let mut state = RunState::default();
    let mut clusters: Option<ClusterState<B>> = None;
    if let Some(path) = &resume_from {
        let ckpt = checkpoint::load(path)?;
        identity.check_resume(&ckpt.state)?;
        let epochs = cfg.epochs_for(dataset.train.len());
        state = restore(&ckpt, &mut store, &mut opt, &mut clusters, (cfg, epochs))?;
        say(
            opts,
            format!(
                "resumed from {} after epoch {}",
                path.display(),
                state.epochs_done
            ),
        );
    }
    // Written only now, once a resume has been checked: a refused resume
    // leaves the run directory as it was.
    report_dataset(opts, out, &dataset)?;
    write_text(&out.join("config.toml"), &cfg.to_toml()?)?;
    let mut metrics = MetricsLog::open(&out.join("metrics.jsonl"), state.epochs_done)?;
    let n_params = store.numel();
    say(
        opts,
        format!(
            "model: {n_params} parameters ({} tensors), backend {} with {} threads",
            store.len(),
            backend.name(),
            rayon::current_num_threads()
        ),
    );

    if state.random_init.is_none() {
        say(
            opts,
            "evaluating the randomly initialised encoder (reference point)",
        );
        state.random_init = Some(evaluate_model(&model, &store, &dataset, cfg)?);
    }

    let batch = t.batch_size.min(dataset.train.len());
    let steps_per_epoch = dataset.train.len() / batch;
    let epochs = cfg.epochs_for(dataset.train.len());
    let total = (steps_per_epoch * epochs) as u64;
    let sched = WarmupCosine {
        peak: t.lr,
        floor: t.min_lr,
        warmup: (t.warmup_epochs * steps_per_epoch as f32) as u64,
        total,
    };
    let c = &cfg.diccae;
    let avcl = cfg.method == Method::Avcl;
    let views = if avcl { 2 } else { 1 };
    let wants_clusters = !avcl && (c.lambda_cls > 0.0 || c.lambda_conf > 0.0);
    let k = if wants_clusters {
        cfg.cluster_count(dataset.classes.len())?
    } else {
        0
    };
    let chance = (batch as f64).ln();

    let mut consecutive_bad = 0usize;
    // The cluster terms start once L_ins has left chance, and at the latest
    // at this epoch (so they train for at least 1 − gate_deadline of the run).
    let deadline = (c.gate_deadline < 1.0)
        .then(|| ((f64::from(c.gate_deadline) * epochs as f64).ceil() as usize).max(1));
    for epoch in state.epochs_done..epochs {
        let epoch_start = Instant::now();
        // Clustering rounds (METHOD.md §3.2): after `warmup_epochs` and then
        // every `recluster_every` epochs, plus one at the epoch the gate opens
        // so the cluster terms start from fresh labels. Rounds before the gate
        // only observe (their pseudo-labels train nothing).
        let terms_on = state.gate_epoch.is_some_and(|g| epoch >= g);
        let scheduled =
            epoch >= c.warmup_epochs && (epoch - c.warmup_epochs).is_multiple_of(c.recluster_every);
        if wants_clusters && (scheduled || state.gate_epoch == Some(epoch)) {
            let tr = embed_split(
                &model,
                &store,
                &dataset.train,
                batch,
                (&shapes.audio, &shapes.video),
            )?;
            let km = KMeansConfig {
                k,
                iters: c.kmeans_iters,
                seed: t.seed ^ epoch as u64,
            };
            let joint;
            let space: &[f32] = match c.cluster_space {
                ClusterSpace::Fused => &tr.z_f,
                ClusterSpace::AudioVideo => {
                    joint = joint_space(&tr.z_a, &tr.z_v, cfg.model.proj_dim);
                    &joint
                }
            };
            let input = RoundInput {
                space,
                modalities: [&tr.z_a, &tr.z_v, &tr.z_f],
                truth: dataset.train.labels.as_deref(),
                keep_fraction: c.confident_fraction,
            };
            let next = ClusterState::recluster(
                clusters.take(),
                &backend,
                &input,
                cfg.model.proj_dim,
                &km,
                epoch,
            )?;
            if let Some(r) = next.last_round() {
                metrics.write(&json!({ "kind": "cluster", "round": r }))?;
                say(
                    opts,
                    format!(
                        "  clustering at epoch {epoch}: K={k}, size entropy {:.3}{}{}{}",
                        r.size_entropy,
                        r.nmi.map_or(String::new(), |v| format!(", NMI {v:.3}")),
                        r.stability
                            .map_or(String::new(), |v| format!(", stable {:.0}%", 100.0 * v)),
                        if terms_on {
                            ""
                        } else {
                            " (observed; cluster terms not on yet)"
                        },
                    ),
                );
            }
            clusters = Some(next);
        }
        let active = terms_on
            && clusters
                .as_ref()
                .and_then(|s| s.last_round())
                .is_some_and(|r| r.size_entropy >= f64::from(c.min_size_entropy));
        let (lambda_cls, lambda_conf, beta) = match state.gate_epoch {
            Some(g) if active => (
                ramp(epoch + 1, g, c.ramp_epochs, c.lambda_cls),
                ramp(epoch + 1, g, c.ramp_epochs, c.lambda_conf),
                ramp(epoch + 1, g, c.ramp_epochs, c.beta_max),
            ),
            _ => (0.0, 0.0, 0.0),
        };
        let lambda_fused = match state.gate_epoch {
            _ if !c.fused_from_gate => c.lambda_fused,
            Some(g) if terms_on => ramp(epoch + 1, g, c.ramp_epochs, c.lambda_fused),
            _ => 0.0,
        };
        let lambda_cgra = ramp(
            epoch + 1,
            0,
            cfg.avcl.cgra_ramp_epochs,
            cfg.avcl.lambda_cgra,
        );

        let mut order: Vec<usize> = (0..dataset.train.len()).collect();
        order.shuffle(&mut seeded(
            t.seed.wrapping_mul(31).wrapping_add(epoch as u64 + 1),
        ));
        let bar = if opts.quiet {
            ProgressBar::hidden()
        } else {
            let b = ProgressBar::new(steps_per_epoch as u64);
            b.set_style(
                ProgressStyle::with_template("epoch {prefix:>3} [{bar:30}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_prefix(format!("{}", epoch + 1));
            b
        };
        let mut sums = EpochSums::default();
        let mut lr = 0.0f32;
        let train_set = &dataset.train;
        let frame_size = cfg.data.frame_size;
        std::thread::scope(|scope| -> Result<()> {
            // Batches are gathered (and augmented) on a background thread:
            // DICCAE flips frames; AVCL makes two augmented views per clip.
            let (tx, rx) = sync_channel(2);
            let seed = t.seed ^ 0xa5a5 ^ ((epoch as u64) << 20);
            let order = &order;
            let (data_cfg, augment) = (&cfg.data, &cfg.avcl.augment);
            scope.spawn(move || {
                let mut rng = seeded(seed);
                for chunk in order.chunks(batch).take(steps_per_epoch) {
                    let item = if avcl {
                        train_set.gather_views(chunk, data_cfg, augment, &mut rng)
                    } else {
                        Ok(train_set.gather(chunk, frame_size, Some(&mut rng)))
                    };
                    if tx.send(item.map(|(a, v)| (chunk.to_vec(), a, v))).is_err() {
                        break;
                    }
                }
            });
            for item in rx {
                let (idx, audio, video) = item?;
                lr = sched.lr(state.steps_done);
                let n = idx.len();
                // The cluster terms train on the batch's confident clips only:
                // they are moved to the front, rows 0..n_conf.
                let (idx, audio, video, n_conf) = match clusters.as_ref().filter(|_| active) {
                    Some(state_c) => confident_first(&state_c.confident, idx, audio, video),
                    None => (idx, audio, video, 0),
                };
                let mut tape = Tape::new(&store);
                let a = tape.constant(Tensor::from_host(
                    &backend,
                    &with_batch(n * views, &shapes.audio),
                    &audio,
                )?);
                let v = tape.constant(Tensor::from_host(
                    &backend,
                    &with_batch(n * views, &shapes.video),
                    &video,
                )?);
                let e = model.forward(&mut tape, a, v)?;
                let (scalars, backward) = if avcl {
                    let terms = avcl_losses(&mut tape, &e, n, &cfg.avcl, lambda_cgra)?;
                    let read = |v: Var| scalar(&backend, tape.value(v));
                    let scalars = StepScalars {
                        loss: read(terms.total)?,
                        ins: read(terms.ins)?,
                        selfcl: Some(read(terms.selfcl)?),
                        cgra: terms.cgra.map(read).transpose()?,
                        ..StepScalars::default()
                    };
                    (scalars, Backward::<B>::Of(terms.total))
                } else {
                    let cluster_batch =
                        clusters
                            .as_mut()
                            .filter(|_| active && n_conf > 0)
                            .map(|state| ClusterBatch {
                                state,
                                idx: &idx[..n_conf],
                            });
                    let weights = TermWeights {
                        tau: c.tau,
                        tau_c: c.tau_c,
                        lambda_fused,
                        lambda_cls,
                        lambda_conf,
                        cluster_grad_ratio: c.cluster_grad_ratio,
                    };
                    let z = [e.z_a, e.z_v, e.z_f].map(|v| tape.value(v));
                    let terms = diccae_terms(&store, z, &weights, cluster_batch)?;
                    let seeds: Vec<_> = [e.z_a, e.z_v, e.z_f]
                        .into_iter()
                        .zip(terms.grads)
                        .filter_map(|(v, g)| g.map(|g| (v, g)))
                        .collect();
                    let scalars = StepScalars {
                        loss: terms.loss,
                        ins: terms.ins,
                        cls: terms.cls,
                        conf: terms.conf,
                        fused: terms.fused,
                        cluster_scale: terms.cluster_scale,
                        ..StepScalars::default()
                    };
                    (scalars, Backward::From(seeds))
                };
                let StepScalars {
                    loss,
                    ins,
                    cls,
                    conf,
                    fused,
                    selfcl,
                    cgra,
                    cluster_scale,
                } = scalars;
                let gate = match e.gate {
                    Some(g) => {
                        let alpha = tape.value(g).to_host(&backend)?;
                        alpha.iter().map(|&x| f64::from(x)).sum::<f64>() / alpha.len().max(1) as f64
                    }
                    None => 0.0,
                };
                let mut reject = |reason: String, sums: &mut EpochSums| -> Result<()> {
                    sums.rejected += 1;
                    consecutive_bad += 1;
                    metrics.write(&json!({ "kind": "rejected_step", "epoch": epoch, "step": state.steps_done, "reason": reason }))?;
                    bar.suspend(|| {
                        eprintln!(
                            "warning: epoch {} step {}: {reason}; step skipped",
                            epoch + 1,
                            state.steps_done
                        )
                    });
                    if consecutive_bad >= 5 {
                        return Err(Error::Training(format!(
                            "5 consecutive steps were non-finite at epoch {} (last: {reason}); the last good checkpoint is kept in {}; try a lower train.lr (now {})",
                            epoch + 1,
                            ckpt_dir.display(),
                            t.lr
                        )));
                    }
                    Ok(())
                };
                if !loss.is_finite() {
                    reject(format!("loss is {loss}"), &mut sums)?;
                    continue;
                }
                let z_host = if active {
                    Some([e.z_a, e.z_v, e.z_f].map(|z| tape.value(z).to_host(&backend)))
                } else {
                    None
                };
                let mut grads = match backward {
                    Backward::Of(total) => tape.backward(total)?,
                    Backward::From(seeds) => tape.backward_from(seeds)?,
                };
                drop(tape);
                let norm = clip_grad_norm(&store, &mut grads, t.grad_clip)?;
                if !norm.is_finite() {
                    reject(format!("gradient norm is {norm}"), &mut sums)?;
                    continue;
                }
                consecutive_bad = 0;
                opt.step(&mut store, &grads, lr)?;
                if let (Some(state_c), Some([za, zv, zf])) = (clusters.as_mut(), z_host)
                    && n_conf > 0
                {
                    let rows = n_conf * cfg.model.proj_dim;
                    let (za, zv, zf) = (za?, zv?, zf?);
                    state_c.ema_update(
                        &backend,
                        &idx[..n_conf],
                        [&za[..rows], &zv[..rows], &zf[..rows]],
                        c.proto_momentum,
                    )?;
                }
                state.steps_done += 1;
                sums.steps += 1;
                sums.clips += n;
                sums.loss += loss;
                sums.l_ins += ins;
                sums.l_cls += cls.unwrap_or(0.0);
                sums.l_conf += conf.unwrap_or(0.0);
                sums.l_fused += fused.unwrap_or(0.0);
                sums.l_selfcl += selfcl.unwrap_or(0.0);
                sums.l_cgra += cgra.unwrap_or(0.0);
                sums.gate += gate;
                sums.grad_norm += norm;
                if let Some(f) = cluster_scale {
                    sums.cluster_scale += f;
                    sums.cluster_steps += 1;
                }
                let rate = sums.clips as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(match selfcl {
                    Some(sc) => format!(
                        "loss {loss:.4} (L_selfcl {sc:.4}, L_ins {ins:.4}{}) {rate:.0} clips/s",
                        cgra.map_or(String::new(), |v| format!(", L_cgra {v:.4}"))
                    ),
                    None => format!("loss {loss:.4} (L_ins {ins:.4}) {rate:.0} clips/s"),
                });
                bar.inc(1);
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        if sums.steps == 0 {
            return Err(Error::Training(format!(
                "epoch {} completed no step",
                epoch + 1
            )));
        }
        if let Some(state_c) = clusters.as_mut().filter(|_| active && lambda_conf > 0.0) {
            state_c.end_epoch(&backend, beta, c.w_momentum)?;
        }
        let s = sums.steps as f64;
        let seconds = epoch_start.elapsed().as_secs_f64();
        let record = EpochRecord {
            epoch,
            loss: sums.loss / s,
            l_ins: sums.l_ins / s,
            l_cls: (lambda_cls > 0.0).then_some(sums.l_cls / s),
            l_conf: (lambda_conf > 0.0).then_some(sums.l_conf / s),
            l_fused: (!avcl && lambda_fused > 0.0).then_some(sums.l_fused / s),
            l_selfcl: avcl.then_some(sums.l_selfcl / s),
            l_cgra: (avcl && lambda_cgra > 0.0).then_some(sums.l_cgra / s),
            lambda_cgra: avcl.then_some(lambda_cgra),
            gate_mean: avcl.then_some(sums.gate / s),
            lambda_cls,
            lambda_conf,
            beta,
            lr,
            grad_norm: sums.grad_norm / s,
            cluster_grad_scale: (sums.cluster_steps > 0 && c.cluster_grad_ratio > 0.0)
                .then(|| sums.cluster_scale / sums.cluster_steps as f64),
            rejected_steps: sums.rejected,
            clips_per_second: sums.clips as f64 / seconds.max(1e-9),
            seconds,
        };
        say(
            opts,
            format!(
                "epoch {:>3}/{}: loss {:.4}{}  L_ins {:.4}{}{}{}{}{}  lr {:.2e}  {:.0} clips/s  {:.1}s",
                epoch + 1,
                epochs,
                record.loss,
                record
                    .l_selfcl
                    .map_or(String::new(), |v| format!("  L_selfcl {v:.4}")),
                record.l_ins,
                record
                    .l_cgra
                    .map_or(String::new(), |v| format!("  L_cgra {v:.4}")),
                record
                    .gate_mean
                    .map_or(String::new(), |v| format!("  gate α {v:.3}")),
                record
                    .l_cls
                    .map_or(String::new(), |v| format!("  L_cls {v:.4}")),
                record
                    .l_conf
                    .map_or(String::new(), |v| format!("  L_conf {v:.4}")),
                record
                    .l_fused
                    .map_or(String::new(), |v| format!("  L_fus {v:.4}")),
                lr,
                record.clips_per_second,
                seconds
            ),
        );
        metrics.write(&json!({ "kind": "epoch", "record": &record }))?;
        let left_chance = record.l_ins < f64::from(c.chance_gate) * chance;
        if state.gate_epoch.is_none()
            && epoch + 1 >= c.warmup_epochs
            && (left_chance || deadline.is_some_and(|d| epoch + 1 >= d))
        {
            state.gate_epoch = Some(epoch + 1);
            if wants_clusters {
                let why = if left_chance {
                    format!("L_ins left chance (ln B = {chance:.3})")
                } else {
                    format!(
                        "L_ins {:.3} is still above {} × ln B = {:.3}, but the deadline (diccae.gate_deadline = {}) is reached",
                        record.l_ins,
                        c.chance_gate,
                        f64::from(c.chance_gate) * chance,
                        c.gate_deadline
                    )
                };
                say(
                    opts,
                    format!("  {why}: cluster terms start at epoch {}", epoch + 2),
                );
            }
        }
        state.history.push(record);
        state.epochs_done = epoch + 1;
        save_checkpoint(
            &ckpt_dir,
            &store,
            &opt,
            clusters.as_ref(),
            &state,
            (cfg, &identity),
            started,
        )?;
    }

    say(opts, "evaluating the pretrained encoder");
    let final_eval = evaluate_model(&model, &store, &dataset, cfg)?;
    let summary = Summary::new(
        cfg,
        &dataset,
        final_eval,
        state.random_init.clone().unwrap_or_default(),
        clusters.as_ref().map(|s| s.export()),
        &state.history,
        state.seconds + started.elapsed().as_secs_f64(),
        n_params,
    );
    metrics.write(&json!({ "kind": "summary", "summary": &summary }))?;
    write_outputs(out, &summary, &state.history)?;
    Ok(TrainOutcome {
        summary,
        run_dir: out.clone(),
    })
}

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
    let opts = TrainOptions {
        out: out.to_path_buf(),
        data: data.map(Path::to_path_buf),
        resume: false,
        quiet: job.quiet,
        overwrite: false,
    };
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.display().to_string(),
        detail: format!("cannot create the output directory: {e}"),
    })?;
    let dataset = features::load(&cfg, data)?;
    report_dataset(&opts, out, &dataset)?;
    let mut store = ParamStore::new(backend);
    let model = AvModel::for_config(&mut store, &cfg)?;
    say(
        &opts,
        "evaluating the randomly initialised encoder (reference point)",
    );
    let random_init = evaluate_model(&model, &store, &dataset, &cfg)?;
    let mut clusters = None;
    let state = restore(
        &ckpt,
        &mut store,
        &mut AdamW::new(AdamWConfig::default()),
        &mut clusters,
        // Evaluation may use other data than the run's, so the run's epoch
        // count is not known here: no bound.
        (&stored, usize::MAX),
    )?;
    say(
        &opts,
        format!(
            "evaluating {} (after epoch {})",
            dir.display(),
            state.epochs_done
        ),
    );
    let eval = evaluate_model(&model, &store, &dataset, &cfg)?;
    let summary = Summary::new(
        &cfg,
        &dataset,
        eval,
        random_init,
        clusters.as_ref().map(ClusterState::<B>::export),
        &state.history,
        started.elapsed().as_secs_f64(),
        store.numel(),
    );
    write_outputs(out, &summary, &state.history)?;
    Ok(summary)
}

/// Embeds both splits without gradients and evaluates the embeddings.
fn evaluate_model<B: Backend>(
    model: &AvModel,
    store: &ParamStore<B>,
    data: &Dataset,
    cfg: &Config,
) -> Result<Evaluation> {
    let shapes = InputShapes::of(cfg);
    let b = cfg.train.batch_size.max(1);
    let embed = |set| embed_split(model, store, set, b, (&shapes.audio, &shapes.video));
    let (train, test) = (embed(&data.train)?, embed(&data.test)?);
    evaluate(
        data,
        &train,
        &test,
        cfg.model.dim,
        cfg.model.proj_dim,
        &cfg.eval,
    )
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    crate::atomic_file::write_atomic(path, text.as_bytes())
}

fn report_dataset(opts: &TrainOptions, out: &Path, d: &Dataset) -> Result<()> {
    say(
        opts,
        format!(
            "data: {} ({} train / {} test clips, {} classes)",
            d.name,
            d.train.len(),
            d.test.len(),
            d.classes.len()
        ),
    );
    if !d.skipped.is_empty() {
        let path = out.join("skipped.txt");
        write_text(&path, &(d.skipped.join("\n") + "\n"))?;
        eprintln!(
            "warning: skipped {} clips that could not be read (all listed in {}):",
            d.skipped.len(),
            path.display()
        );
        for s in d.skipped.iter().take(5) {
            eprintln!("  {s}");
        }
    }
    Ok(())
}

fn save_checkpoint<B: Backend>(
    dir: &Path,
    store: &ParamStore<B>,
    opt: &AdamW<B>,
    clusters: Option<&ClusterState<B>>,
    state: &RunState,
    (cfg, data): (&Config, &DataIdentity),
    started: Instant,
) -> Result<()> {
    let be = store.backend();
    let mut tensors = BTreeMap::new();
    for id in store.ids() {
        let name = store.name(id);
        let value = store.get(id);
        let data = value.to_host(be)?;
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Training(format!(
                "parameter {name} holds {} at element {i}; not writing a poisoned checkpoint",
                data[i]
            )));
        }
        tensors.insert(
            format!("param.{name}"),
            HostTensor {
                shape: value.shape().to_vec(),
                data,
            },
        );
        if let Some((m, v)) = opt.moments(id) {
            for (kind, buf) in [("m", m), ("v", v)] {
                tensors.insert(
                    format!("adam.{kind}.{name}"),
                    HostTensor {
                        shape: value.shape().to_vec(),
                        data: be.download(buf)?,
                    },
                );
            }
        }
    }
    let snapshot = clusters.map(|c| c.export());
    if let Some(s) = &snapshot {
        for (m, p) in MODALITIES.iter().zip(&s.prototypes) {
            tensors.insert(
                format!("cluster.prototypes.{m}"),
                HostTensor {
                    shape: vec![s.k, s.dim],
                    data: p.clone(),
                },
            );
        }
        tensors.insert(
            "cluster.centroids".into(),
            HostTensor {
                shape: vec![s.k, s.dim],
                data: s.centroids.clone(),
            },
        );
        tensors.insert(
            "cluster.weights".into(),
            HostTensor {
                shape: vec![s.k, s.k],
                data: s.weights.clone(),
            },
        );
    }
    let mut saved = state.clone();
    saved.seconds += started.elapsed().as_secs_f64();
    let body = json!({
        "format": "diccae-engine checkpoint 1",
        "config": cfg.to_toml()?,
        "data": data,
        "run": saved,
        "adam_step": opt.step_count(),
        "cluster": snapshot.map(|s| json!({ "k": s.k, "dim": s.dim, "labels": s.labels, "confident": s.confident, "rounds": s.rounds })),
    });
    checkpoint::save(
        dir,
        &format!("epoch-{:04}", state.epochs_done),
        &Checkpoint {
            tensors,
            state: body,
        },
    )?;
    if cfg.train.keep_checkpoints > 0 {
        checkpoint::prune(dir, cfg.train.keep_checkpoints)?;
    }
    Ok(())
}

fn restore<B: Backend>(
    ckpt: &Checkpoint,
    store: &mut ParamStore<B>,
    opt: &mut AdamW<B>,
    clusters: &mut Option<ClusterState<B>>,
    (cfg, epochs): (&Config, usize),
) -> Result<RunState> {
    let bad = |d: String| Error::Training(format!("cannot resume: {d}"));
    let saved_cfg = ckpt.state["config"]
        .as_str()
        .ok_or_else(|| bad("checkpoint has no config".into()))?;
    // Compared parsed, so a run saved before a knob existed (its default
    // filled in) still resumes with the same configuration.
    if Config::from_toml(saved_cfg)? != *cfg {
        return Err(bad(
            "the configuration differs from the checkpoint's; resume with the run's own config.toml".into(),
        ));
    }
    let be = store.backend().clone();
    let mut moments = Vec::new();
    for id in store.ids().collect::<Vec<_>>() {
        let name = store.name(id).to_string();
        let t = ckpt
            .tensors
            .get(&format!("param.{name}"))
            .ok_or_else(|| bad(format!("parameter {name} is missing")))?;
        if t.shape != store.get(id).shape() {
            return Err(bad(format!(
                "parameter {name} has shape {:?}, the model {:?}",
                t.shape,
                store.get(id).shape()
            )));
        }
        *store.get_mut(id) = Tensor::from_host(&be, &t.shape, &t.data)?;
        let m = ckpt.tensors.get(&format!("adam.m.{name}"));
        let v = ckpt.tensors.get(&format!("adam.v.{name}"));
        moments.push(match (m, v) {
            (Some(m), Some(v)) => Some((be.upload(&m.data)?, be.upload(&v.data)?)),
            _ => None,
        });
    }
    let adam_step = ckpt.state["adam_step"]
        .as_u64()
        .ok_or_else(|| bad("state.json has no adam_step".into()))?;
    opt.restore(adam_step, moments);
    if let Some(c) = ckpt.state.get("cluster").filter(|c| !c.is_null()) {
        let get = |n: &str| {
            ckpt.tensors
                .get(n)
                .map(|t| t.data.clone())
                .ok_or_else(|| bad(format!("{n} is missing")))
        };
        let snapshot = ClusterSnapshot {
            k: c["k"].as_u64().unwrap_or(0) as usize,
            dim: c["dim"].as_u64().unwrap_or(0) as usize,
            labels: serde_json::from_value(c["labels"].clone())
                .map_err(|e| bad(format!("cluster labels: {e}")))?,
            // Absent in checkpoints written before confidence selection.
            confident: match c.get("confident") {
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|e| bad(format!("cluster confident flags: {e}")))?,
                None => Vec::new(),
            },
            centroids: get("cluster.centroids")?,
            prototypes: [
                get("cluster.prototypes.audio")?,
                get("cluster.prototypes.video")?,
                get("cluster.prototypes.fused")?,
            ],
            weights: get("cluster.weights")?,
            rounds: serde_json::from_value(c["rounds"].clone())
                .map_err(|e| bad(format!("cluster rounds: {e}")))?,
        };
        *clusters = Some(ClusterState::restore(&be, snapshot)?);
    }
    let run: RunState = serde_json::from_value(ckpt.state["run"].clone())
        .map_err(|e| bad(format!("run state: {e}")))?;
    if run.history.len() != run.epochs_done || run.steps_done != adam_step {
        return Err(bad(format!(
            "state.json is inconsistent: {} epochs done but {} epoch records, {} steps done but adam_step {adam_step}",
            run.epochs_done,
            run.history.len(),
            run.steps_done
        )));
    }
    if run.epochs_done > epochs {
        return Err(bad(format!(
            "the checkpoint is after epoch {}, but this run has {epochs} epochs",
            run.epochs_done
        )));
    }
    Ok(run)
}

/// Reorders a batch so the clips flagged in `confident` come first, keeping
/// each group's order; returns the batch and the number of confident clips.
fn confident_first(
    confident: &[bool],
    idx: Vec<usize>,
    audio: Vec<f32>,
    video: Vec<f32>,
) -> (Vec<usize>, Vec<f32>, Vec<f32>, usize) {
    let n = idx.len().max(1);
    let (a_len, v_len) = (audio.len() / n, video.len() / n);
    let mut order: Vec<usize> = (0..idx.len()).collect();
    order.sort_by_key(|&r| !confident.get(idx[r]).copied().unwrap_or(true));
    let n_conf = order
        .iter()
        .take_while(|&&r| confident.get(idx[r]).copied().unwrap_or(true))
        .count();
    let gather = |x: &[f32], len: usize| -> Vec<f32> {
        order
            .iter()
            .flat_map(|&r| x[r * len..(r + 1) * len].iter().copied())
            .collect()
    };
    (
        order.iter().map(|&r| idx[r]).collect(),
        gather(&audio, a_len),
        gather(&video, v_len),
        n_conf,
    )
}

/// The terms of one AVCL step.
struct AvclTerms {
    /// `L_selfcl + lambda_cross·L_ins + λ_cgra·L_cgra`.
    total: Var,
    /// SelfCL InfoNCE between the views' fused embeddings.
    selfcl: Var,
    /// Cross-modal InfoNCE, the mean over both views.
    ins: Var,
    /// CGRA over both views' tokens (absent when its weight is 0).
    cgra: Option<Var>,
}

/// Splits `z [2n, p]` (view 1 of `n` clips, then view 2) into the two views.
fn split_views<B: Backend>(tape: &mut Tape<'_, B>, z: Var, n: usize) -> Result<(Var, Var)> {
    let p = tape.shape(z)[1];
    let z = reshape(tape, z, &[1, 2 * n, p])?;
    let (first, second) = split_tokens(tape, z, n)?;
    Ok((
        reshape(tape, first, &[n, p])?,
        reshape(tape, second, &[n, p])?,
    ))
}

/// The AVCL objective (METHOD.md §4) of a batch of `n` clips whose model
/// outputs `e` hold both views (`2n` rows, view 1 first): SelfCL is the
/// symmetric InfoNCE between `z_f` of view 1 and view 2 (positives: the same
/// clip); `L_ins` the cross-modal InfoNCE of `z_a` and `z_v` within each
/// view, averaged over the views (a clip's audio is never contrasted with
/// its own other view's video); CGRA is the mean over all `2n` clips' tokens.
fn avcl_losses<B: Backend>(
    tape: &mut Tape<'_, B>,
    e: &Embeddings,
    n: usize,
    cfg: &AvclConfig,
    lambda_cgra: f32,
) -> Result<AvclTerms> {
    let (zf1, zf2) = split_views(tape, e.z_f, n)?;
    let selfcl = infonce(tape, zf1, zf2, cfg.selfcl_tau)?;
    let (za1, za2) = split_views(tape, e.z_a, n)?;
    let (zv1, zv2) = split_views(tape, e.z_v, n)?;
    let ins1 = infonce(tape, za1, zv1, cfg.cross_tau)?;
    let ins2 = infonce(tape, za2, zv2, cfg.cross_tau)?;
    let both = add(tape, ins1, ins2)?;
    let ins = scale(tape, both, 0.5)?;
    let mut total = selfcl;
    if cfg.lambda_cross > 0.0 {
        let weighted = scale(tape, ins, cfg.lambda_cross)?;
        total = add(tape, total, weighted)?;
    }
    let cgra = if lambda_cgra > 0.0 {
        let l = cgra_loss(tape, e.tokens_a, e.tokens_v, cfg.cgra_tau)?;
        let weighted = scale(tape, l, lambda_cgra)?;
        total = add(tape, total, weighted)?;
        Some(l)
    } else {
        None
    };
    Ok(AvclTerms {
        total,
        selfcl,
        ins,
        cgra,
    })
}
