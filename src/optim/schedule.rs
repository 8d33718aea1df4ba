//! Schedules: the learning rate (linear warmup, then cosine decay) and the
//! linear ramp of a loss weight over epochs.

/// Linear warmup from 0 to `peak` over `warmup` steps, then cosine decay to
/// `floor` at `total` steps (and `floor` after).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarmupCosine {
    /// Learning rate at the end of warmup.
    pub peak: f32,
    /// Learning rate at the end of training.
    pub floor: f32,
    /// Warmup steps.
    pub warmup: u64,
    /// Total steps.
    pub total: u64,
}

impl WarmupCosine {
    /// The learning rate for 0-based `step`.
    pub fn lr(&self, step: u64) -> f32 {
        if step < self.warmup {
            return self.peak * (step + 1) as f32 / self.warmup as f32;
        }
        if step >= self.total || self.total <= self.warmup {
            return self.floor;
        }
        let progress = (step - self.warmup) as f64 / (self.total - self.warmup) as f64;
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        (f64::from(self.floor) + f64::from(self.peak - self.floor) * cosine) as f32
    }
}

/// The ramp `max·min(1, (epoch − warm)/ramp)` of a term's weight over
/// epochs (DICCAE's `β_e`, `λ_cls(e)`, `λ_conf(e)`; AVCL's `λ_cgra(e)`):
/// zero up to `warm`, reaching `max` after `ramp` further epochs (`ramp = 0`
/// jumps to `max` at `warm`).
pub fn ramp(epoch: usize, warm: usize, ramp: usize, max: f32) -> f32 {
    let past = epoch.saturating_sub(warm);
    if ramp == 0 {
        return if epoch >= warm { max } else { 0.0 };
    }
    max * (past as f32 / ramp as f32).min(1.0)
}
