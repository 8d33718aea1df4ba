//! Run configuration: every knob of the model, the data, the objective and
//! training, with presets, TOML files and `key.path=value` overrides.
//!
//! A configuration is built in three layers: the preset's defaults, then the
//! TOML file (any subset of keys), then command-line overrides. Unknown keys
//! are errors that name the key, so a typo never silently falls back to a
//! default. The resolved configuration is saved with each run.

pub mod rules;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::augment::AugmentConfig;
use crate::error::{Error, Result};

/// Model architecture (METHOD.md §2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Token width.
    pub dim: usize,
    /// Attention heads (must divide `dim`).
    pub heads: usize,
    /// Transformer blocks of the audio encoder.
    pub audio_layers: usize,
    /// Transformer blocks of the video encoder.
    pub video_layers: usize,
    /// Joint (AMFM) blocks over audio and video tokens.
    pub fusion_layers: usize,
    /// MLP hidden width as a multiple of `dim`.
    pub mlp_ratio: usize,
    /// Output dimension of the projection heads.
    pub proj_dim: usize,
    /// Side of the square spectrogram patches.
    pub audio_patch: usize,
    /// Frames per video tubelet.
    pub tubelet_frames: usize,
    /// Pixel side of a video tubelet.
    pub tubelet_size: usize,
    /// LayerNorm epsilon.
    pub norm_eps: f32,
    /// How linear layers are initialised: `normal` (weights N(0, 0.02²),
    /// biases zero) or `fan_in` (weights and biases U(±1/√fan_in), PyTorch's
    /// `nn.Linear` default). Configurations stored before this knob existed
    /// read as `normal`.
    #[serde(default)]
    pub init: InitScheme,
    /// Standard deviation of the learned position embeddings' initial
    /// values, N(0, σ²). Configurations stored before this knob existed
    /// read as 0.02 (the BERT/ViT convention).
    #[serde(default = "default_position_std")]
    pub position_std: f32,
    /// The video encoder's position σ, when it differs from
    /// `position_std` (which then sets the audio encoder's alone); unset =
    /// `position_std` for both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_position_std: Option<f32>,
}

/// `model.position_std` of configurations stored before it existed.
fn default_position_std() -> f32 {
    0.02
}

/// The initialisation of linear layers (`model.init`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitScheme {
    /// Weights N(0, 0.02²), biases zero (the BERT/ViT convention).
    #[default]
    Normal,
    /// Weights and biases U(±1/√fan_in) (PyTorch's `nn.Linear` default).
    FanIn,
}

/// Input features (METHOD.md §1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Mel bins of the log-mel spectrogram.
    pub n_mels: usize,
    /// Spectrogram frames per clip (10 ms each); padded or cropped.
    pub audio_frames: usize,
    /// Video frames sampled per clip.
    pub frames: usize,
    /// Side of the resized square frames.
    pub frame_size: usize,
    /// Classes of the built-in dataset (even, at most 10).
    pub synthetic_classes: usize,
    /// Built-in dataset: training clips per class.
    pub synthetic_train_per_class: usize,
    /// Built-in dataset: test clips per class. The default, 200, keeps the
    /// sampling error of the confusable-pair accuracy near ±0.8 points (±1.7 at 40).
    pub synthetic_test_per_class: usize,
}

/// Optimisation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the training set; 0 = chosen from the dataset's size, so
    /// that the run makes about `steps` optimiser steps whatever the number
    /// of clips (see [`Config::epochs_for`]).
    pub epochs: usize,
    /// With `epochs = 0`: the optimiser steps a run aims for; it trains
    /// `ceil(steps / steps per epoch)` epochs.
    #[serde(default = "default_steps")]
    pub steps: usize,
    /// Clips per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f32,
    /// Final learning rate of the cosine decay.
    pub min_lr: f32,
    /// Linear warmup, in epochs.
    pub warmup_epochs: f32,
    /// AdamW decoupled weight decay (not applied to biases and norms).
    pub weight_decay: f32,
    /// AdamW β1.
    pub beta1: f32,
    /// AdamW β2.
    pub beta2: f32,
    /// Global gradient-norm clip.
    pub grad_clip: f64,
    /// Seed of initialisation, data order and augmentation.
    pub seed: u64,
    /// Checkpoints kept in the run's `checkpoints/`: the newest this many
    /// (the one `latest` names always among them); 0 keeps every epoch's.
    #[serde(default)]
    pub keep_checkpoints: usize,
}

/// The DICCAE objective (METHOD.md §3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiccaeConfig {
    /// InfoNCE temperature τ.
    pub tau: f32,
    /// Prototype temperature τ_c.
    pub tau_c: f32,
    /// Weight of the class-level alignment loss L_cls (after its ramp).
    pub lambda_cls: f32,
    /// Weight of the confusion-aware loss L_conf (after its ramp).
    pub lambda_conf: f32,
    /// Weight of the fused instance term
    /// `L_fus = ½·[InfoNCE(z_f, z_a) + InfoNCE(z_f, z_v)]` at τ, from the
    /// first step (0 = off, METHOD.md's objective), with `z_a` and `z_v` as
    /// constants (stop-gradient). It gives the fusion blocks and the fused
    /// head an instance-level objective besides L_conf, and leaves the
    /// cross-modal geometry to L_ins.
    #[serde(default)]
    pub lambda_fused: f32,
    /// With `lambda_fused` > 0: start L_fus when the cluster terms start
    /// (the chance gate or its deadline) and ramp it like them, so it
    /// cannot slow L_ins's escape from chance; `false` = from the first step.
    #[serde(default)]
    pub fused_from_gate: bool,
    /// Cap on the cluster terms' gradient: at each step, the gradient of
    /// `λ_cls·L_cls + λ_conf·L_conf` at the embeddings (z_a, z_v, z_f) is
    /// scaled down, when needed, so its norm is at most this multiple of
    /// the instance terms' (L_ins, and L_fus when on). 0 = no cap
    /// (METHOD.md's plain sum of the terms).
    #[serde(default)]
    pub cluster_grad_ratio: f32,
    /// Epochs of L_ins alone before the first clustering round. Rounds run
    /// from then on every `recluster_every` epochs, but only observe until the
    /// gate opens: the cluster terms wait for L_ins to leave chance.
    pub warmup_epochs: usize,
    /// Re-cluster every this many epochs.
    pub recluster_every: usize,
    /// Epochs over which λ_cls, λ_conf and β ramp from 0 to their values.
    pub ramp_epochs: usize,
    /// Clusters K; 0 = `clusters_per_class` × the number of classes (which
    /// then must be known: unlabelled data needs an explicit K).
    pub clusters: usize,
    /// With `clusters = 0`, clusters per class: above 1 the clips are
    /// over-clustered (as XDC and SeLaVi do), so two confusable classes are
    /// less often merged into one pseudo-class.
    #[serde(default = "one")]
    pub clusters_per_class: f32,
    /// Lloyd iterations per clustering.
    pub kmeans_iters: usize,
    /// EMA momentum of the prototypes.
    pub proto_momentum: f32,
    /// EMA factor γ of the confusion weights W.
    pub w_momentum: f32,
    /// Largest confusion boost β_max.
    pub beta_max: f32,
    /// The cluster terms start only once L_ins is below this fraction of
    /// its chance value ln(B).
    pub chance_gate: f32,
    /// The latest point, as a fraction of the run's epochs, at which the
    /// cluster terms start even if L_ins has not passed the chance gate, so
    /// they always train for at least `1 − gate_deadline` of the run
    /// (1 = wait for the gate however long it takes).
    #[serde(default = "one")]
    pub gate_deadline: f32,
    /// The embeddings k-means clusters: `fused` (z_f, as METHOD.md says;
    /// only the confusion-aware loss trains it) or `audio_video` (the
    /// normalised sum of z_a and z_v, the space L_ins trains from the start).
    pub cluster_space: ClusterSpace,
    /// A clustering round whose normalised cluster-size entropy falls below
    /// this is treated as collapsed: the cluster terms pause until the next round.
    pub min_size_entropy: f32,
    /// Fraction of each cluster (its clips with the largest assignment
    /// margin) whose pseudo-labels L_cls and L_conf train on and the
    /// prototypes follow; 1 trains on every clip.
    #[serde(default = "one")]
    pub confident_fraction: f32,
}

/// The value of a knob in configurations stored before it existed.
fn one() -> f32 {
    1.0
}

/// `train.steps` of configurations stored before it existed (they all set
/// `train.epochs`, so it is never used for them).
fn default_steps() -> usize {
    TINY_STEPS
}

/// The `tiny` preset's step budget.
const TINY_STEPS: usize = 1500;

/// Which embeddings the pseudo-labels come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterSpace {
    /// `normalise(z_a + z_v)`.
    AudioVideo,
    /// `z_f`.
    Fused,
}

/// The pretraining objective (the top-level `method` key, `--method` on the
/// command line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// DICCAE (METHOD.md §3): instance contrast plus the cluster-guided
    /// terms; configured by `[diccae]`.
    #[default]
    Diccae,
    /// AVCL (METHOD.md §4): SelfCL over two augmented views, the
    /// cross-modal L_ins and CGRA, with the AMFM gated pooling; configured
    /// by `[avcl]`.
    Avcl,
}

impl Method {
    /// The name used in configs, `summary.json` and tables.
    pub fn name(self) -> &'static str {
        match self {
            Method::Diccae => "diccae",
            Method::Avcl => "avcl",
        }
    }
}

/// The AVCL objective (METHOD.md §4, docs/METHOD-NOTES.md):
/// `L = L_SelfCL + lambda_cross·L_ins + λ_cgra(e)·L_CGRA`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AvclConfig {
    /// Weight of the CGRA alignment loss on the encoders' tokens (after its ramp).
    pub lambda_cgra: f32,
    /// Epochs over which λ_cgra ramps linearly from 0 (0 = full weight from
    /// the first step).
    pub cgra_ramp_epochs: usize,
    /// Temperature of the co-correlation softmax in CGRA (1 = the plain
    /// formulation; smaller sharpens the token attention).
    pub cgra_tau: f32,
    /// Temperature of the SelfCL InfoNCE between the two views' fused embeddings.
    pub selfcl_tau: f32,
    /// Weight of the cross-modal instance contrast L_ins (z_a against z_v,
    /// averaged over both views).
    pub lambda_cross: f32,
    /// Temperature of the cross-modal L_ins.
    pub cross_tau: f32,
    /// Strengths of the view augmentations (`[avcl.augment]`).
    pub augment: AugmentConfig,
}

impl Default for AvclConfig {
    fn default() -> Self {
        AvclConfig {
            lambda_cgra: 1.0,
            cgra_ramp_epochs: 0,
            cgra_tau: 1.0,
            selfcl_tau: 0.1,
            lambda_cross: 1.0,
            cross_tau: 0.07,
            augment: AugmentConfig::default(),
        }
    }
}

/// Evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Neighbours of the kNN classifier.
    pub knn_k: usize,
    /// Epochs of linear-probe training.
    pub probe_epochs: usize,
    /// Linear-probe learning rate.
    pub probe_lr: f32,
    /// Linear-probe weight decay.
    pub probe_weight_decay: f32,
}

/// A complete run configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The preset the defaults came from (`tiny` or `base`).
    pub preset: String,
    /// The objective: `diccae` (default) or `avcl`.
    #[serde(default)]
    pub method: Method,
    /// Architecture.
    pub model: ModelConfig,
    /// Features.
    pub data: DataConfig,
    /// Optimisation.
    pub train: TrainConfig,
    /// The DICCAE objective (used when `method = "diccae"`).
    pub diccae: DiccaeConfig,
    /// The AVCL objective (used when `method = "avcl"`).
    #[serde(default)]
    pub avcl: AvclConfig,
    /// Evaluation.
    pub eval: EvalConfig,
}

/// Names of the presets.
pub const PRESETS: [&str; 2] = ["tiny", "base"];

impl Config {
    /// The defaults of a preset: `tiny` trains on 2 CPU cores in minutes;
    /// `base` is ViT-B-like, for GPUs.
    pub fn preset(name: &str) -> Result<Config> {
        let tiny = Config {
            preset: "tiny".into(),
            method: Method::Diccae,
            model: ModelConfig {
                dim: 128,
                heads: 4,
                audio_layers: 2,
                video_layers: 2,
                fusion_layers: 1,
                mlp_ratio: 2,
                proj_dim: 128,
                audio_patch: 16,
                tubelet_frames: 1,
                tubelet_size: 8,
                norm_eps: 1e-5,
                init: InitScheme::FanIn,
                // Audio 1.0, video 0.02: docs/RESULTS.md, session 6.
                position_std: 1.0,
                video_position_std: Some(0.02),
            },
            data: DataConfig {
                n_mels: 64,
                audio_frames: 96,
                frames: 4,
                frame_size: 32,
                synthetic_classes: 10,
                synthetic_train_per_class: 120,
                synthetic_test_per_class: 200,
            },
            train: TrainConfig {
                epochs: 0,
                steps: TINY_STEPS,
                batch_size: 64,
                lr: 1e-3,
                min_lr: 1e-5,
                warmup_epochs: 1.0,
                weight_decay: 0.05,
                beta1: 0.9,
                beta2: 0.999,
                grad_clip: 1.0,
                seed: 0,
                keep_checkpoints: 3,
            },
            diccae: DiccaeConfig {
                tau: 0.07,
                tau_c: 0.1,
                lambda_cls: 1.0,
                lambda_conf: 1.0,
                lambda_fused: 0.0,
                fused_from_gate: false,
                cluster_grad_ratio: 0.0,
                warmup_epochs: 5,
                recluster_every: 3,
                ramp_epochs: 5,
                clusters: 0,
                clusters_per_class: 2.0,
                kmeans_iters: 20,
                proto_momentum: 0.9,
                w_momentum: 0.9,
                beta_max: 1.0,
                chance_gate: 0.9,
                gate_deadline: 0.5,
                cluster_space: ClusterSpace::AudioVideo,
                min_size_entropy: 0.6,
                confident_fraction: 1.0,
            },
            avcl: AvclConfig::default(),
            eval: EvalConfig {
                knn_k: 20,
                probe_epochs: 100,
                probe_lr: 1e-2,
                probe_weight_decay: 1e-4,
            },
        };
        match name {
            "tiny" => Ok(tiny),
            "base" => Ok(Config {
                preset: "base".into(),
                model: ModelConfig {
                    dim: 768,
                    heads: 12,
                    audio_layers: 11,
                    video_layers: 11,
                    fusion_layers: 1,
                    mlp_ratio: 4,
                    proj_dim: 256,
                    audio_patch: 16,
                    tubelet_frames: 2,
                    tubelet_size: 16,
                    norm_eps: 1e-6,
                    init: InitScheme::Normal,
                    position_std: 0.02,
                    video_position_std: None,
                },
                data: DataConfig {
                    n_mels: 128,
                    audio_frames: 1024,
                    frames: 8,
                    frame_size: 224,
                    ..tiny.data
                },
                train: TrainConfig {
                    batch_size: 256,
                    lr: 5e-4,
                    epochs: 100,
                    warmup_epochs: 10.0,
                    beta2: 0.95,
                    ..tiny.train
                },
                ..tiny
            }),
            other => Err(Error::invalid(
                "config",
                format!("unknown preset {other:?}; choose one of {PRESETS:?}"),
            )),
        }
    }

    /// Builds a configuration: the preset named in the file (or `preset`
    /// when given, else `tiny`), then the file's keys, then `overrides`
    /// (`section.key=value`, the value a TOML literal or a bare string).
    pub fn resolve(
        preset: Option<&str>,
        file: Option<&Path>,
        overrides: &[String],
    ) -> Result<Config> {
        let mut user = toml::Table::new();
        let origin = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::invalid("config", format!("cannot read {}: {e}", path.display()))
                })?;
                user = text.parse::<toml::Table>().map_err(|e| {
                    Error::invalid(
                        "config",
                        format!("{} is not valid TOML: {e}", path.display()),
                    )
                })?;
                path.display().to_string()
            }
            None => "the command line".to_string(),
        };
        for o in overrides {
            apply_override(&mut user, o)?;
        }
        let from_file = user
            .get("preset")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let name = preset
            .map(str::to_string)
            .or(from_file)
            .unwrap_or_else(|| "tiny".into());
        user.insert("preset".into(), toml::Value::String(name.clone()));
        let base = Config::preset(&name)?;
        let mut merged = toml::Table::try_from(&base)
            .map_err(|e| Error::invalid("config", format!("cannot encode preset: {e}")))?;
        merge(&mut merged, user);
        Config::from_table(merged, &format!("in {origin}"))
    }

    /// Deserialises a complete table and checks it; errors start with `context`.
    fn from_table(table: toml::Table, context: &str) -> Result<Config> {
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| {
                Error::invalid("config", format!("{context}: {}", e.message()))
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a stored configuration (e.g. the one a checkpoint holds). A knob
    /// added after the run was saved takes the value that reproduces what
    /// runs did before it existed (its `serde` default); an unknown key is an
    /// error.
    pub fn from_toml(text: &str) -> Result<Config> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            Error::invalid("config", format!("stored configuration: {}", e.message()))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// This configuration with evaluation-side overrides applied
    /// (`section.key=value`, as for `train --set`): only keys that leave the
    /// trained model unchanged may be set, `eval.*` and
    /// `data.synthetic_test_per_class`.
    pub fn with_eval_overrides(&self, overrides: &[String]) -> Result<Config> {
        let mut table = toml::Table::try_from(self)
            .map_err(|e| Error::invalid("config", format!("cannot encode: {e}")))?;
        for o in overrides {
            let key = o.split_once('=').map_or(o.as_str(), |(k, _)| k).trim();
            if !(key.starts_with("eval.") || key == "data.synthetic_test_per_class") {
                return Err(Error::invalid(
                    "config",
                    format!(
                        "eval --set {key}: only eval.* and data.synthetic_test_per_class can change when evaluating a checkpoint (other keys change the model or its training)"
                    ),
                ));
            }
            apply_override(&mut table, o)?;
        }
        Config::from_table(table, "eval --set")
    }

    /// The number of clusters K for data with `classes` known classes (0 when
    /// unlabelled): `diccae.clusters`, else `clusters_per_class × classes`
    /// (at least 2). Errors when K cannot follow unknown classes.
    pub fn cluster_count(&self, classes: usize) -> Result<usize> {
        let c = &self.diccae;
        if c.clusters > 0 {
            return Ok(c.clusters);
        }
        if classes == 0 {
            return Err(Error::invalid(
                "config",
                "the data has no labels, so the number of clusters cannot follow the number of classes: set diccae.clusters (e.g. --set diccae.clusters=50)",
            ));
        }
        Ok(((c.clusters_per_class * classes as f32).round() as usize).max(2))
    }

    /// The epochs a run over `train_clips` training clips takes:
    /// `train.epochs`, or with `train.epochs = 0` enough epochs for
    /// `train.steps` optimiser steps of `train.batch_size` clips (at least 1).
    pub fn epochs_for(&self, train_clips: usize) -> usize {
        let t = &self.train;
        if t.epochs > 0 {
            return t.epochs;
        }
        let per_epoch = (train_clips / t.batch_size.min(train_clips).max(1)).max(1);
        t.steps.div_ceil(per_epoch).max(1)
    }

    /// Checks every key's range ([`rules::KEY_RULES`]) and the relations
    /// between knobs.
    pub fn validate(&self) -> Result<()> {
        let bad = |d: String| Err(Error::invalid("config", d));
        let table = toml::Table::try_from(self)
            .map_err(|e| Error::invalid("config", format!("cannot encode: {e}")))?;
        if let Some(why) = rules::check(&table) {
            return bad(why);
        }
        let m = &self.model;
        if !m.dim.is_multiple_of(m.heads) {
            return bad(format!(
                "model.heads = {} must divide model.dim = {}",
                m.heads, m.dim
            ));
        }
        let d = &self.data;
        if !d.n_mels.is_multiple_of(m.audio_patch) || !d.audio_frames.is_multiple_of(m.audio_patch)
        {
            return bad(format!(
                "model.audio_patch = {} must divide data.n_mels = {} and data.audio_frames = {}",
                m.audio_patch, d.n_mels, d.audio_frames
            ));
        }
        if !d.frames.is_multiple_of(m.tubelet_frames)
            || !d.frame_size.is_multiple_of(m.tubelet_size)
        {
            return bad(format!(
                "model.tubelet_frames = {} must divide data.frames = {}, and model.tubelet_size = {} data.frame_size = {}",
                m.tubelet_frames, d.frames, m.tubelet_size, d.frame_size
            ));
        }
        let t = &self.train;
        if t.epochs == 0 && t.steps == 0 {
            return bad("train.epochs = 0 chooses the epochs from train.steps, which must then be at least 1".into());
        }
        if t.min_lr > t.lr {
            return bad(format!(
                "train.min_lr = {} must not exceed train.lr = {} (the schedule decays from lr to min_lr)",
                t.min_lr, t.lr
            ));
        }
        self.avcl
            .augment
            .validate()
            .map_err(|e| Error::invalid("config", format!("avcl.augment: {e}")))?;
        Ok(())
    }

    /// The configuration as TOML (what a run saves as `config.toml`).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self)
            .map_err(|e| Error::invalid("config", format!("cannot encode: {e}")))
    }
}

/// Sets `section.key` (any depth) in `table` from `path=value`.
fn apply_override(table: &mut toml::Table, spec: &str) -> Result<()> {
    let (path, raw) = spec.split_once('=').ok_or_else(|| {
        Error::invalid(
            "config",
            format!("override {spec:?} is not of the form section.key=value"),
        )
    })?;
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let keys: Vec<&str> = path.trim().split('.').collect();
    let (last, parents) = keys
        .split_last()
        .ok_or_else(|| Error::invalid("config", "empty override key"))?;
    let mut cur = table;
    for k in parents {
        let entry = cur
            .entry(k.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| {
            Error::invalid("config", format!("override {spec:?}: {k} is not a section"))
        })?;
    }
    cur.insert(last.to_string(), value);
    Ok(())
}

/// Deep-merges `over` into `base`: tables merge key by key, values replace.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}
