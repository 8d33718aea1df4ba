//! AdamW with decoupled weight decay, skipped for parameters registered
//! without decay (biases, norm gains).

use crate::autograd::{Grads, ParamId, ParamStore};
use crate::error::{Error, Result};
use crate::ops::Backend;
use crate::ops::adamw::kernels::AdamWStep;

/// AdamW hyper-parameters (the learning rate comes from the schedule).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Added to the root of the second moment.
    pub eps: f32,
    /// Decoupled weight decay for parameters that take it.
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    /// The usual transformer pretraining values: β = (0.9, 0.95), eps 1e-8, decay 0.05.
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.05,
        }
    }
}

/// AdamW state: the step count and both moments of every parameter, kept on
/// the parameters' backend.
pub struct AdamW<B: Backend> {
    config: AdamWConfig,
    step: u64,
    moments: Vec<Option<(B::Buf, B::Buf)>>,
}

impl<B: Backend> AdamW<B> {
    /// A fresh optimiser (step 0, zero moments allocated on first use).
    pub fn new(config: AdamWConfig) -> Self {
        AdamW {
            config,
            step: 0,
            moments: Vec::new(),
        }
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Number of steps taken.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The moments `(m, v)` of a parameter, once it has been updated.
    pub fn moments(&self, id: ParamId) -> Option<(&B::Buf, &B::Buf)> {
        self.moments
            .get(id.index())
            .and_then(|s| s.as_ref())
            .map(|(m, v)| (m, v))
    }

    /// Restores the state a checkpoint saved: the step count and, per
    /// parameter (by index), its moments if it had any.
    pub fn restore(&mut self, step: u64, moments: Vec<Option<(B::Buf, B::Buf)>>) {
        self.step = step;
        self.moments = moments;
    }

    /// One update of every parameter that has a gradient in `grads`, at
    /// learning rate `lr`. Parameters without a gradient keep their value
    /// and moments.
    pub fn step(&mut self, params: &mut ParamStore<B>, grads: &Grads<B>, lr: f32) -> Result<()> {
        if !lr.is_finite() || lr < 0.0 {
            return Err(Error::invalid("AdamW::step", format!("learning rate {lr}")));
        }
        let backend = params.backend().clone();
        if self.moments.len() < params.len() {
            self.moments.resize_with(params.len(), || None);
        }
        self.step += 1;
        let t = self.step as i32;
        let c = &self.config;
        for id in params.ids().collect::<Vec<_>>() {
            let Some(g) = grads.param(id) else {
                continue;
            };
            let slot = &mut self.moments[id.index()];
            if slot.is_none() {
                let n = params.get(id).numel();
                *slot = Some((backend.zeros(n)?, backend.zeros(n)?));
            }
            let (m, v) = slot
                .as_mut()
                .ok_or_else(|| Error::Autograd("moments".into()))?;
            let step = AdamWStep {
                lr,
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                weight_decay: if params.decays(id) {
                    c.weight_decay
                } else {
                    0.0
                },
                bias_correction1: 1.0 - c.beta1.powi(t),
                bias_correction2: 1.0 - c.beta2.powi(t),
            };
            backend.adamw_update(&step, params.get_mut(id).buf_mut(), g, m, v)?;
        }
        Ok(())
    }
}
