//! A run's progress in a checkpoint: the parameters, AdamW's moments, the
//! objective's own state and everything else of the run (`state.json`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::autograd::ParamStore;
use crate::checkpoint::{self, Checkpoint, HostTensor};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::eval::scores::Evaluation;
use crate::ops::Backend;
use crate::optim::AdamW;
use crate::report::record::EpochRecord;
use crate::tensor::Tensor;
use crate::train::objective::Objective;
use crate::train::run_dir::DataIdentity;

/// Everything of a run's progress that is not a tensor.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunState {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Optimiser steps taken.
    pub steps_done: u64,
    /// One record per completed epoch.
    pub history: Vec<EpochRecord>,
    /// The untrained encoder's evaluation (the reference point).
    pub random_init: Option<Evaluation>,
    /// Wall time of the run's earlier processes (a resumed run adds its own).
    pub seconds: f64,
}

/// What a checkpoint saves besides the parameters and the run state.
pub struct SaveContext<'a, B: Backend> {
    /// The optimiser, whose moments are saved.
    pub opt: &'a AdamW<B>,
    /// The objective, which adds its own state.
    pub objective: &'a dyn Objective<B>,
    /// The run's configuration.
    pub cfg: &'a Config,
    /// The data the run trains on.
    pub data: &'a DataIdentity,
}

/// Writes checkpoint `epoch-NNNN` of `state` into `dir` (then prunes to
/// `train.keep_checkpoints`); `extra_seconds` is this process's wall time so
/// far. Refuses to write non-finite parameters.
pub fn save<B: Backend>(
    dir: &Path,
    store: &ParamStore<B>,
    ctx: &SaveContext<'_, B>,
    state: &RunState,
    extra_seconds: f64,
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
        if let Some((m, v)) = ctx.opt.moments(id) {
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
    let mut saved = state.clone();
    saved.seconds += extra_seconds;
    let mut body = serde_json::Map::new();
    body.insert("format".into(), json!("diccae-engine checkpoint 1"));
    body.insert("config".into(), json!(ctx.cfg.to_toml()?));
    body.insert("data".into(), json!(ctx.data));
    body.insert("run".into(), json!(saved));
    body.insert("adam_step".into(), json!(ctx.opt.step_count()));
    ctx.objective.save(&mut tensors, &mut body)?;
    checkpoint::save(
        dir,
        &format!("epoch-{:04}", state.epochs_done),
        &Checkpoint {
            tensors,
            state: serde_json::Value::Object(body),
        },
    )?;
    if ctx.cfg.train.keep_checkpoints > 0 {
        checkpoint::prune(dir, ctx.cfg.train.keep_checkpoints)?;
    }
    Ok(())
}

/// Restores parameters, AdamW and the objective (when given) from `ckpt`,
/// after checking that its configuration is `cfg` and that it is not past
/// `epochs`.
pub fn restore<'o, B: Backend>(
    ckpt: &Checkpoint,
    store: &mut ParamStore<B>,
    opt: &mut AdamW<B>,
    objective: Option<&mut (dyn Objective<B> + 'o)>,
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
    if let Some(o) = objective {
        o.restore(&be, ckpt)?;
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
