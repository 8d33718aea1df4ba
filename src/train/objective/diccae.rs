//! DICCAE (METHOD.md §3): instance contrast from the start; once the
//! instance loss has left chance (or at the deadline), periodic k-means on
//! the embeddings, class-level alignment and the confusion-aware loss with
//! ramped weights, prototypes updated by EMA after each step and W at the end
//! of each epoch. The step's terms are `train::diccae_terms`; the cluster
//! state is `train::clusters`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::autograd::{ParamStore, Tape};
use crate::checkpoint::{Checkpoint, HostTensor};
use crate::config::{ClusterSpace, Config, DiccaeConfig};
use crate::error::{Error, Result};
use crate::kmeans::KMeansConfig;
use crate::model::Embeddings;
use crate::ops::Backend;
use crate::optim::ramp;
use crate::report::record::{EpochRecord, TermSums, Terms};
use crate::report::summary::{ObjectiveReport, WeightSummary};
use crate::train::clusters::{ClusterSnapshot, ClusterState, MODALITIES, RoundInput, joint_space};
use crate::train::diccae_terms::{ClusterBatch, TermWeights, diccae_terms};
use crate::train::embed::embed_split;
use crate::train::features::Dataset;
use crate::train::objective::{
    Backward, Batch, Objective, Plan, RunContext, RunLog, StepLoss, Views,
};

/// This epoch's weights of the terms.
#[derive(Clone, Copy, Debug, Default)]
struct EpochWeights {
    /// The cluster terms train this epoch (gate open, clusters balanced).
    active: bool,
    lambda_cls: f32,
    lambda_conf: f32,
    beta: f32,
    lambda_fused: f32,
}

/// The DICCAE objective: its configuration, the chance gate and the cluster
/// state.
pub struct Diccae<B: Backend> {
    cfg: DiccaeConfig,
    seed: u64,
    proj_dim: usize,
    /// Whether any cluster term has a positive weight.
    wants_clusters: bool,
    /// Clusters per round (0 without cluster terms).
    k: usize,
    /// `ln B`: the instance loss at chance.
    chance: f64,
    /// The epoch by which the gate opens whatever L_ins does.
    deadline: Option<usize>,
    /// The epoch the cluster terms start (set when the gate opens).
    gate_epoch: Option<usize>,
    clusters: Option<ClusterState<B>>,
    weights: EpochWeights,
    /// The current step's confident rows (the batch's first `n_conf`) and
    /// their embeddings for the prototype EMA, set by `step_loss`.
    n_conf: usize,
    pending_ema: Option<(Vec<usize>, [Vec<f32>; 3])>,
}

impl<B: Backend> Diccae<B> {
    /// DICCAE as `cfg.diccae` configures it, for a run of shape `plan`.
    pub fn new(cfg: &Config, plan: &Plan, dataset: &Dataset) -> Result<Self> {
        let c = &cfg.diccae;
        let wants_clusters = c.lambda_cls > 0.0 || c.lambda_conf > 0.0;
        let k = if wants_clusters {
            cfg.cluster_count(dataset.classes.len())?
        } else {
            0
        };
        // The cluster terms start once L_ins has left chance, and at the latest
        // at this epoch (so they train for at least 1 − gate_deadline of the run).
        let deadline = (c.gate_deadline < 1.0)
            .then(|| ((f64::from(c.gate_deadline) * plan.epochs as f64).ceil() as usize).max(1));
        Ok(Diccae {
            cfg: c.clone(),
            seed: cfg.train.seed,
            proj_dim: cfg.model.proj_dim,
            wants_clusters,
            k,
            chance: (plan.batch as f64).ln(),
            deadline,
            gate_epoch: None,
            clusters: None,
            weights: EpochWeights::default(),
            n_conf: 0,
            pending_ema: None,
        })
    }

    /// A clustering round at the start of `epoch` (METHOD.md §3.2).
    fn recluster(
        &mut self,
        run: &RunContext<'_, B>,
        epoch: usize,
        terms_on: bool,
        log: &mut RunLog<'_>,
    ) -> Result<()> {
        let backend = run.store.backend();
        let train = &run.dataset.train;
        let tr = embed_split(
            run.model,
            run.store,
            train,
            run.plan.batch,
            (&run.shapes.audio, &run.shapes.video),
        )?;
        let km = KMeansConfig {
            k: self.k,
            iters: self.cfg.kmeans_iters,
            seed: self.seed ^ epoch as u64,
        };
        let joint;
        let space: &[f32] = match self.cfg.cluster_space {
            ClusterSpace::Fused => &tr.z_f,
            ClusterSpace::AudioVideo => {
                joint = joint_space(&tr.z_a, &tr.z_v, self.proj_dim);
                &joint
            }
        };
        let input = RoundInput {
            space,
            modalities: [&tr.z_a, &tr.z_v, &tr.z_f],
            truth: train.labels.as_deref(),
            keep_fraction: self.cfg.confident_fraction,
        };
        let next = ClusterState::recluster(
            self.clusters.take(),
            backend,
            &input,
            self.proj_dim,
            &km,
            epoch,
        )?;
        if let Some(r) = next.last_round() {
            log.metrics
                .write(&json!({ "kind": "cluster", "round": r }))?;
            log.console.say(format!(
                "  clustering at epoch {epoch}: K={}, size entropy {:.3}{}{}{}",
                self.k,
                r.size_entropy,
                r.nmi.map_or(String::new(), |v| format!(", NMI {v:.3}")),
                r.stability
                    .map_or(String::new(), |v| format!(", stable {:.0}%", 100.0 * v)),
                if terms_on {
                    ""
                } else {
                    " (observed; cluster terms not on yet)"
                },
            ));
        }
        self.clusters = Some(next);
        Ok(())
    }
}

impl<B: Backend> Objective<B> for Diccae<B> {
    fn views(&self) -> Views {
        Views::Flipped
    }

    fn begin_epoch(
        &mut self,
        run: &RunContext<'_, B>,
        epoch: usize,
        log: &mut RunLog<'_>,
    ) -> Result<()> {
        let c = &self.cfg;
        // Clustering rounds: after `warmup_epochs` and then every
        // `recluster_every` epochs, plus one at the epoch the gate opens so
        // the cluster terms start from fresh labels. Rounds before the gate
        // only observe (their pseudo-labels train nothing).
        let terms_on = self.gate_epoch.is_some_and(|g| epoch >= g);
        let scheduled =
            epoch >= c.warmup_epochs && (epoch - c.warmup_epochs).is_multiple_of(c.recluster_every);
        if self.wants_clusters && (scheduled || self.gate_epoch == Some(epoch)) {
            self.recluster(run, epoch, terms_on, log)?;
        }
        let c = &self.cfg;
        let active = terms_on
            && self
                .clusters
                .as_ref()
                .and_then(|s| s.last_round())
                .is_some_and(|r| r.size_entropy >= f64::from(c.min_size_entropy));
        let (lambda_cls, lambda_conf, beta) = match self.gate_epoch {
            Some(g) if active => (
                ramp(epoch + 1, g, c.ramp_epochs, c.lambda_cls),
                ramp(epoch + 1, g, c.ramp_epochs, c.lambda_conf),
                ramp(epoch + 1, g, c.ramp_epochs, c.beta_max),
            ),
            _ => (0.0, 0.0, 0.0),
        };
        let lambda_fused = match self.gate_epoch {
            _ if !c.fused_from_gate => c.lambda_fused,
            Some(g) if terms_on => ramp(epoch + 1, g, c.ramp_epochs, c.lambda_fused),
            _ => 0.0,
        };
        self.weights = EpochWeights {
            active,
            lambda_cls,
            lambda_conf,
            beta,
            lambda_fused,
        };
        Ok(())
    }

    /// The cluster terms train on the batch's confident clips only: they
    /// are moved to the front, rows `0..n_conf`.
    fn arrange(&mut self, batch: Batch) -> Batch {
        match self.clusters.as_ref().filter(|_| self.weights.active) {
            Some(state) => {
                let (batch, n_conf) = confident_first(&state.confident, batch);
                self.n_conf = n_conf;
                batch
            }
            None => {
                self.n_conf = 0;
                batch
            }
        }
    }

    fn step_loss(
        &mut self,
        store: &ParamStore<B>,
        tape: &mut Tape<'_, B>,
        e: &Embeddings,
        idx: &[usize],
    ) -> Result<StepLoss<B>> {
        let w = self.weights;
        let n_conf = self.n_conf;
        let cluster_batch = self
            .clusters
            .as_mut()
            .filter(|_| w.active && n_conf > 0)
            .map(|state| ClusterBatch {
                state,
                idx: &idx[..n_conf],
            });
        let weights = TermWeights {
            tau: self.cfg.tau,
            tau_c: self.cfg.tau_c,
            lambda_fused: w.lambda_fused,
            lambda_cls: w.lambda_cls,
            lambda_conf: w.lambda_conf,
            cluster_grad_ratio: self.cfg.cluster_grad_ratio,
        };
        let outputs = [e.z_a, e.z_v, e.z_f];
        let z = outputs.map(|v| tape.value(v));
        let terms = diccae_terms(store, z, &weights, cluster_batch)?;
        self.pending_ema = None;
        if w.active && n_conf > 0 && self.clusters.is_some() && terms.loss.is_finite() {
            let be = store.backend();
            let rows = n_conf * self.proj_dim;
            let mut host = [Vec::new(), Vec::new(), Vec::new()];
            for (h, v) in host.iter_mut().zip(outputs) {
                let mut all = tape.value(v).to_host(be)?;
                all.truncate(rows);
                *h = all;
            }
            self.pending_ema = Some((idx[..n_conf].to_vec(), host));
        }
        let mut logged = vec![("l_ins", terms.ins)];
        for (name, v) in [
            ("l_cls", terms.cls),
            ("l_conf", terms.conf),
            ("l_fused", terms.fused),
            ("cluster_grad_scale", terms.cluster_scale),
        ] {
            if let Some(v) = v {
                logged.push((name, v));
            }
        }
        let seeds = outputs
            .into_iter()
            .zip(terms.grads)
            .filter_map(|(v, g)| g.map(|g| (v, g)))
            .collect();
        Ok(StepLoss {
            loss: terms.loss,
            logged,
            backward: Backward::From(seeds),
        })
    }

    fn after_step(&mut self, backend: &B) -> Result<()> {
        if let (Some(state), Some((idx, [za, zv, zf]))) =
            (self.clusters.as_mut(), self.pending_ema.take())
        {
            state.ema_update(backend, &idx, [&za, &zv, &zf], self.cfg.proto_momentum)?;
        }
        Ok(())
    }

    fn end_epoch(&mut self, backend: &B, sums: &TermSums) -> Result<Terms> {
        let w = self.weights;
        if let Some(state) = self
            .clusters
            .as_mut()
            .filter(|_| w.active && w.lambda_conf > 0.0)
        {
            state.end_epoch(backend, w.beta, self.cfg.w_momentum)?;
        }
        let mut t = Terms::default();
        t.set("l_ins", sums.mean_over_steps("l_ins"));
        for (name, weight) in [
            ("l_cls", w.lambda_cls),
            ("l_conf", w.lambda_conf),
            ("l_fused", w.lambda_fused),
        ] {
            if weight > 0.0 {
                t.set(name, sums.mean_over_steps(name));
            }
        }
        t.set_weight("lambda_cls", w.lambda_cls);
        t.set_weight("lambda_conf", w.lambda_conf);
        t.set_weight("beta", w.beta);
        if self.cfg.cluster_grad_ratio > 0.0
            && let Some(s) = sums.mean_where_logged("cluster_grad_scale")
        {
            t.set("cluster_grad_scale", s);
        }
        Ok(t)
    }

    /// The chance gate: the cluster terms start at the next epoch once L_ins
    /// is below `chance_gate × ln B`, or at the deadline.
    fn epoch_logged(&mut self, record: &EpochRecord, log: &mut RunLog<'_>) -> Result<()> {
        let c = &self.cfg;
        let epoch = record.epoch;
        let l_ins = record.term("l_ins").unwrap_or(f64::NAN);
        let left_chance = l_ins < f64::from(c.chance_gate) * self.chance;
        if self.gate_epoch.is_none()
            && epoch + 1 >= c.warmup_epochs
            && (left_chance || self.deadline.is_some_and(|d| epoch + 1 >= d))
        {
            self.gate_epoch = Some(epoch + 1);
            if self.wants_clusters {
                let chance = self.chance;
                let why = if left_chance {
                    format!("L_ins left chance (ln B = {chance:.3})")
                } else {
                    format!(
                        "L_ins {l_ins:.3} is still above {} × ln B = {:.3}, but the deadline (diccae.gate_deadline = {}) is reached",
                        c.chance_gate,
                        f64::from(c.chance_gate) * chance,
                        c.gate_deadline
                    )
                };
                log.console.say(format!(
                    "  {why}: cluster terms start at epoch {}",
                    epoch + 2
                ));
            }
        }
        Ok(())
    }

    fn save(
        &self,
        tensors: &mut BTreeMap<String, HostTensor>,
        state: &mut serde_json::Map<String, Value>,
    ) -> Result<()> {
        state.insert("gate_epoch".into(), json!(self.gate_epoch));
        let Some(s) = self.clusters.as_ref().map(ClusterState::export) else {
            state.insert("cluster".into(), Value::Null);
            return Ok(());
        };
        let table = |data: &Vec<f32>, rows: usize, cols: usize| HostTensor {
            shape: vec![rows, cols],
            data: data.clone(),
        };
        for (m, p) in MODALITIES.iter().zip(&s.prototypes) {
            tensors.insert(format!("cluster.prototypes.{m}"), table(p, s.k, s.dim));
        }
        tensors.insert("cluster.centroids".into(), table(&s.centroids, s.k, s.dim));
        tensors.insert("cluster.weights".into(), table(&s.weights, s.k, s.k));
        state.insert(
            "cluster".into(),
            json!({ "k": s.k, "dim": s.dim, "labels": s.labels, "confident": s.confident, "rounds": s.rounds }),
        );
        Ok(())
    }

    fn restore(&mut self, backend: &B, ckpt: &Checkpoint) -> Result<()> {
        let bad = |d: String| Error::Training(format!("cannot resume: {d}"));
        // Checkpoints written before the objectives kept the gate in the run
        // state.
        let gate = ckpt
            .state
            .get("gate_epoch")
            .or_else(|| ckpt.state.get("run").and_then(|r| r.get("gate_epoch")));
        self.gate_epoch = match gate {
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|e| bad(format!("gate_epoch: {e}")))?
            }
            None => None,
        };
        let Some(c) = ckpt.state.get("cluster").filter(|c| !c.is_null()) else {
            return Ok(());
        };
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
        self.clusters = Some(ClusterState::restore(backend, snapshot)?);
        Ok(())
    }

    /// The clustering rounds' quality, the first epoch the cluster terms
    /// trained, and the final W when L_conf trained.
    fn report(&self, history: &[EpochRecord]) -> ObjectiveReport {
        let weight = |h: &EpochRecord, name: &str| h.term(name).unwrap_or(0.0);
        let mut out = ObjectiveReport::default();
        let clustering = &mut out.clustering;
        clustering.terms_from_epoch = history
            .iter()
            .find(|h| weight(h, "lambda_cls") > 0.0 || weight(h, "lambda_conf") > 0.0)
            .map(|h| h.epoch);
        let Some(s) = self.clusters.as_ref().map(ClusterState::export) else {
            return out;
        };
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
        if history.iter().any(|h| weight(h, "lambda_conf") > 0.0) && !off.is_empty() {
            out.weights = Some(WeightSummary {
                max: off.iter().copied().fold(f64::MIN, f64::max),
                mean_offdiag: off.iter().sum::<f64>() / off.len() as f64,
            });
            out.weight_matrix = Some((k, s.weights));
        }
        out
    }
}

/// Reorders a batch so the clips flagged in `confident` come first, keeping
/// each group's order; returns it and the number of confident clips.
fn confident_first(confident: &[bool], batch: Batch) -> (Batch, usize) {
    let Batch { idx, audio, video } = batch;
    let n = idx.len().max(1);
    let (a_len, v_len) = (audio.len() / n, video.len() / n);
    let is_confident = |i: usize| confident.get(i).copied().unwrap_or(true);
    let mut order: Vec<usize> = (0..idx.len()).collect();
    order.sort_by_key(|&r| !is_confident(idx[r]));
    let n_conf = order.iter().take_while(|&&r| is_confident(idx[r])).count();
    let gather = |x: &[f32], len: usize| -> Vec<f32> {
        order
            .iter()
            .flat_map(|&r| x[r * len..(r + 1) * len].iter().copied())
            .collect()
    };
    let arranged = Batch {
        idx: order.iter().map(|&r| idx[r]).collect(),
        audio: gather(&audio, a_len),
        video: gather(&video, v_len),
    };
    (arranged, n_conf)
}
