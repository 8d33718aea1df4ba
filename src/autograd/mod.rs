//! Reverse-mode automatic differentiation: a tape of recorded ops replayed
//! backwards, and a named parameter registry.

mod params;
mod tape;

pub use params::{ParamId, ParamStore};
pub use tape::{BackwardCtx, BackwardOp, Grads, Tape, Var};
