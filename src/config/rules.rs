//! The range of every configuration key: one rule per key, checked on the
//! configuration's TOML form, so an error names the key as the user wrote it.
//! `tests/config.rs` checks that every key of the configuration has a rule
//! here (a key that takes any value of its type says so with
//! [`Rule::Free`]).

/// What values a key accepts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// Finite and above 0.
    Positive,
    /// Finite and 0 or more.
    NonNegative,
    /// In `(0, 1]`.
    UpToOne,
    /// In `[0, 1)`.
    BelowOne,
    /// In `[0, 1]`.
    Unit,
    /// Finite and at least this (floats).
    AtLeast(f64),
    /// An integer at least this.
    Count(i64),
    /// Any value of the key's type (seeds, switches, names, counts where 0
    /// has a meaning that the key's documentation gives).
    Free,
}

impl Rule {
    /// Why `v` breaks this rule, or `None` when it keeps it.
    fn broken_by(self, v: &toml::Value) -> Option<String> {
        let x = match v {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            _ => return None,
        };
        let ok = match self {
            Rule::Positive => x > 0.0 && x.is_finite(),
            Rule::NonNegative => x >= 0.0 && x.is_finite(),
            Rule::UpToOne => x > 0.0 && x <= 1.0,
            Rule::BelowOne => (0.0..1.0).contains(&x),
            Rule::Unit => (0.0..=1.0).contains(&x),
            Rule::AtLeast(m) => x >= m && x.is_finite(),
            Rule::Count(m) => x >= m as f64,
            Rule::Free => true,
        };
        (!ok).then(|| match self {
            Rule::Positive => "must be finite and above 0".to_string(),
            Rule::NonNegative => "must be finite, 0 or more".to_string(),
            Rule::UpToOne => "must lie in (0, 1]".to_string(),
            Rule::BelowOne => "must lie in [0, 1)".to_string(),
            Rule::Unit => "must lie in [0, 1]".to_string(),
            Rule::AtLeast(m) => format!("must be finite and at least {m}"),
            Rule::Count(m) => format!("must be at least {m}"),
            Rule::Free => unreachable!("a free key accepts every value"),
        })
    }
}

/// Every key of the configuration and its rule.
pub const KEY_RULES: &[(&str, Rule)] = &[
    ("preset", Rule::Free),
    ("method", Rule::Free),
    ("model.dim", Rule::Count(1)),
    ("model.heads", Rule::Count(1)),
    ("model.audio_layers", Rule::Count(1)),
    ("model.video_layers", Rule::Count(1)),
    ("model.fusion_layers", Rule::Count(1)),
    ("model.mlp_ratio", Rule::Count(1)),
    ("model.proj_dim", Rule::Count(1)),
    ("model.audio_patch", Rule::Count(1)),
    ("model.tubelet_frames", Rule::Count(1)),
    ("model.tubelet_size", Rule::Count(1)),
    ("model.norm_eps", Rule::Positive),
    ("model.init", Rule::Free),
    ("model.position_std", Rule::NonNegative),
    ("model.video_position_std", Rule::NonNegative),
    ("data.n_mels", Rule::Count(1)),
    ("data.audio_frames", Rule::Count(1)),
    ("data.frames", Rule::Count(1)),
    ("data.frame_size", Rule::Count(1)),
    ("data.synthetic_classes", Rule::Count(2)),
    ("data.synthetic_train_per_class", Rule::Count(1)),
    ("data.synthetic_test_per_class", Rule::Count(1)),
    ("train.epochs", Rule::Free),
    ("train.steps", Rule::Free),
    ("train.batch_size", Rule::Count(2)),
    ("train.lr", Rule::Positive),
    ("train.min_lr", Rule::NonNegative),
    ("train.warmup_epochs", Rule::NonNegative),
    ("train.weight_decay", Rule::NonNegative),
    ("train.beta1", Rule::BelowOne),
    ("train.beta2", Rule::BelowOne),
    ("train.grad_clip", Rule::Positive),
    ("train.seed", Rule::Free),
    ("train.keep_checkpoints", Rule::Free),
    ("diccae.tau", Rule::Positive),
    ("diccae.tau_c", Rule::Positive),
    ("diccae.lambda_cls", Rule::NonNegative),
    ("diccae.lambda_conf", Rule::NonNegative),
    ("diccae.lambda_fused", Rule::NonNegative),
    ("diccae.fused_from_gate", Rule::Free),
    ("diccae.cluster_grad_ratio", Rule::NonNegative),
    ("diccae.warmup_epochs", Rule::Free),
    ("diccae.recluster_every", Rule::Count(1)),
    ("diccae.ramp_epochs", Rule::Free),
    ("diccae.clusters", Rule::Free),
    ("diccae.clusters_per_class", Rule::Positive),
    ("diccae.kmeans_iters", Rule::Count(1)),
    ("diccae.proto_momentum", Rule::BelowOne),
    ("diccae.w_momentum", Rule::BelowOne),
    ("diccae.beta_max", Rule::NonNegative),
    ("diccae.chance_gate", Rule::Positive),
    ("diccae.gate_deadline", Rule::UpToOne),
    ("diccae.cluster_space", Rule::Free),
    ("diccae.min_size_entropy", Rule::Unit),
    ("diccae.confident_fraction", Rule::UpToOne),
    ("avcl.lambda_cgra", Rule::NonNegative),
    ("avcl.cgra_ramp_epochs", Rule::Free),
    ("avcl.cgra_tau", Rule::Positive),
    ("avcl.selfcl_tau", Rule::Positive),
    ("avcl.lambda_cross", Rule::NonNegative),
    ("avcl.cross_tau", Rule::Positive),
    ("avcl.augment.time_shift", Rule::Unit),
    ("avcl.augment.time_shift_circular", Rule::Free),
    ("avcl.augment.gain", Rule::NonNegative),
    ("avcl.augment.noise_std", Rule::NonNegative),
    ("avcl.augment.time_masks", Rule::Free),
    ("avcl.augment.time_mask_width", Rule::Free),
    ("avcl.augment.freq_masks", Rule::Free),
    ("avcl.augment.freq_mask_width", Rule::Free),
    ("avcl.augment.temporal_jitter", Rule::Free),
    ("avcl.augment.frame_repeat_prob", Rule::Unit),
    ("avcl.augment.crop_min_scale", Rule::UpToOne),
    ("avcl.augment.crop_max_aspect", Rule::AtLeast(1.0)),
    ("avcl.augment.flip_prob", Rule::Unit),
    ("avcl.augment.brightness", Rule::Unit),
    ("avcl.augment.contrast", Rule::Unit),
    ("avcl.augment.saturation", Rule::Unit),
    ("eval.knn_k", Rule::Count(1)),
    ("eval.probe_epochs", Rule::Count(1)),
    ("eval.probe_lr", Rule::Positive),
    ("eval.probe_weight_decay", Rule::NonNegative),
];

/// The value at a dotted key of a table.
pub fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let mut parts = key.split('.');
    let mut cur = table.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_table()?.get(p)?;
    }
    Some(cur)
}

/// The first key of `table` whose value breaks its rule, as an error line
/// naming the key, the value and the range.
pub fn check(table: &toml::Table) -> Option<String> {
    KEY_RULES.iter().find_map(|&(key, rule)| {
        let v = lookup(table, key)?;
        rule.broken_by(v).map(|why| format!("{key} = {v} {why}"))
    })
}
