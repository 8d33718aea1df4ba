//! The epoch record: what one epoch of training logged, whatever the
//! objective. The loop fills the fields every method has (loss, learning
//! rate, gradient norm, throughput); the objective names its own terms
//! (`l_ins`, `l_cls`, `lambda_cgra`, …), which serialise beside them so that
//! `metrics.jsonl` and `state.json` keep the flat layout of older runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// An objective's named values for one epoch (loss terms, weights, gates).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Terms(pub BTreeMap<String, f64>);

impl<'de> Deserialize<'de> for Terms {
    /// Keeps the numeric entries: records written before the terms were
    /// generic hold `null` for a term that did not train that epoch.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        Ok(Terms(
            raw.into_iter()
                .filter_map(|(k, v)| v.as_f64().map(|x| (k, x)))
                .collect(),
        ))
    }
}

impl Terms {
    /// Sets `name` to `value`.
    pub fn set(&mut self, name: &str, value: f64) {
        self.0.insert(name.to_string(), value);
    }

    /// Sets `name` to a weight held as f32, keeping its shortest decimal
    /// form (0.3, not 0.30000001192092896) in the JSON.
    pub fn set_weight(&mut self, name: &str, value: f32) {
        let shown = value.to_string().parse().unwrap_or(f64::from(value));
        self.set(name, shown);
    }
}

/// Means of one epoch's logged values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0-based epoch.
    pub epoch: usize,
    /// Total loss.
    pub loss: f64,
    /// The objective's terms (see `train::objective`), flattened into the
    /// record: `l_*` are loss terms, the rest weights and diagnostics.
    #[serde(flatten)]
    pub terms: Terms,
    /// Learning rate at the epoch's last step.
    pub lr: f32,
    /// Mean gradient norm before clipping.
    pub grad_norm: f64,
    /// Steps rejected for a non-finite loss or gradient.
    pub rejected_steps: usize,
    /// Training throughput.
    pub clips_per_second: f64,
    /// Wall time of the epoch.
    pub seconds: f64,
}

impl EpochRecord {
    /// The term `name`, when the objective logged it this epoch.
    pub fn term(&self, name: &str) -> Option<f64> {
        self.terms.0.get(name).copied()
    }

    /// The loss terms (`l_*`), `l_ins` first, as (term key, value); shown
    /// to a person through [`display_name`].
    pub fn loss_terms(&self) -> Vec<(&str, f64)> {
        let mut names: Vec<&str> = self
            .terms
            .0
            .keys()
            .map(String::as_str)
            .filter(|k| k.starts_with("l_"))
            .collect();
        names.sort_by_key(|k| (*k != "l_ins", *k));
        names.into_iter().map(|k| (k, self.terms.0[k])).collect()
    }
}

/// `l_cls` → `L_cls`: how a loss term is named in logs and plots.
pub fn display_name(term: &str) -> String {
    match term.strip_prefix("l_") {
        Some(rest) => format!("L_{rest}"),
        None => term.to_string(),
    }
}

/// Sums of the values an objective logged over an epoch's steps.
#[derive(Clone, Debug, Default)]
pub struct TermSums {
    /// Steps that trained (rejected steps excluded).
    pub steps: usize,
    sums: BTreeMap<&'static str, (f64, usize)>,
}

impl TermSums {
    /// Adds one step's values.
    pub fn add_step(&mut self, values: &[(&'static str, f64)]) {
        self.steps += 1;
        for &(name, v) in values {
            let e = self.sums.entry(name).or_insert((0.0, 0));
            e.0 += v;
            e.1 += 1;
        }
    }

    /// The sum of `name` over the epoch divided by every step (a term absent
    /// from a step counts 0 there).
    pub fn mean_over_steps(&self, name: &str) -> f64 {
        let sum = self.sums.get(name).map_or(0.0, |e| e.0);
        sum / self.steps.max(1) as f64
    }

    /// The mean of `name` over the steps that logged it, if any did.
    pub fn mean_where_logged(&self, name: &str) -> Option<f64> {
        self.sums
            .get(name)
            .filter(|e| e.1 > 0)
            .map(|e| e.0 / e.1 as f64)
    }
}
