//! A step's logged values read off the tape with one device-to-host copy.

use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::ops::Backend;
use crate::ops::tokens::{concat_tokens, reshape};

/// The values of `vars` with one download: each is flattened and the lot
/// concatenated on the backend first (a step's logged scalars cost one
/// device-to-host copy, not one each). Returns each value's elements.
pub fn download_together<B: Backend>(
    tape: &mut Tape<'_, B>,
    vars: &[Var],
) -> Result<Vec<Vec<f32>>> {
    let mut flat = Vec::with_capacity(vars.len());
    let mut lens = Vec::with_capacity(vars.len());
    for &v in vars {
        let n: usize = tape.shape(v).iter().product();
        lens.push(n);
        flat.push(reshape(tape, v, &[1, n, 1])?);
    }
    let all = concat_tokens(tape, &flat)?;
    let host = tape.value(all).to_host(tape.backend())?;
    let mut out = Vec::with_capacity(lens.len());
    let mut at = 0;
    for n in lens {
        out.push(host[at..at + n].to_vec());
        at += n;
    }
    Ok(out)
}

/// The first element of a downloaded value as f64 (NaN when empty).
pub fn first(value: &[f32]) -> f64 {
    value.first().copied().map_or(f64::NAN, f64::from)
}
