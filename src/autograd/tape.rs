//! The tape: ops append the values they produce and, when a gradient is
//! needed, a backward record; [`Tape::backward`] replays the records in
//! reverse and accumulates gradients.

use crate::autograd::params::{ParamId, ParamStore};
use crate::backend::BackendCore;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A value recorded on a [`Tape`]: an index into its value list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(usize);

impl Var {
    /// Position on the tape.
    pub fn index(self) -> usize {
        self.0
    }
}

/// The backward half of an op: given the gradient of its output, add the
/// gradients of its inputs through [`BackwardCtx::accumulate`] or
/// [`BackwardCtx::grad_mut`]. Implementations keep the input [`Var`]s and
/// whatever they saved in the forward pass.
pub trait BackwardOp<B: BackendCore> {
    /// The op's name, for error messages and tape dumps.
    fn name(&self) -> &'static str;
    /// Propagates `grad_out` (the output's gradient) to the inputs.
    fn backward(&self, ctx: &mut BackwardCtx<'_, B>, grad_out: &B::Buf) -> Result<()>;
}

enum Value<B: BackendCore> {
    Owned(Tensor<B>),
    Param(ParamId),
}

struct Node<B: BackendCore> {
    output: Var,
    backward: Box<dyn BackwardOp<B>>,
}

/// Records a forward pass over parameters borrowed from a [`ParamStore`].
///
/// With gradients disabled ([`Tape::no_grad`]) ops still compute their outputs
/// but record nothing, so evaluation keeps no activations for backward.
pub struct Tape<'p, B: BackendCore> {
    backend: B,
    params: &'p ParamStore<B>,
    values: Vec<Value<B>>,
    requires_grad: Vec<bool>,
    param_vars: Vec<Option<Var>>,
    nodes: Vec<Node<B>>,
    grad_enabled: bool,
}

impl<'p, B: BackendCore> Tape<'p, B> {
    /// A recording tape over `params`.
    pub fn new(params: &'p ParamStore<B>) -> Self {
        Tape {
            backend: params.backend().clone(),
            params,
            values: Vec::new(),
            requires_grad: Vec::new(),
            param_vars: vec![None; params.len()],
            nodes: Vec::new(),
            grad_enabled: true,
        }
    }

    /// A tape that records no backward (evaluation, inference).
    pub fn no_grad(params: &'p ParamStore<B>) -> Self {
        let mut tape = Self::new(params);
        tape.grad_enabled = false;
        tape
    }

    /// Whether ops on this tape record their backward.
    pub fn grad_enabled(&self) -> bool {
        self.grad_enabled
    }

    /// The backend every value lives on.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Number of backward records (ops that need a gradient).
    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The names of the recorded ops, in forward order.
    pub fn op_names(&self) -> Vec<&'static str> {
        self.nodes.iter().map(|n| n.backward.name()).collect()
    }

    /// A parameter as a value on the tape (one `Var` per parameter; no copy).
    pub fn param(&mut self, id: ParamId) -> Var {
        if let Some(v) = self.param_vars[id.index()] {
            return v;
        }
        let v = self.push_value(Value::Param(id), self.grad_enabled);
        self.param_vars[id.index()] = Some(v);
        v
    }

    /// A value that needs no gradient (data, targets, prototypes).
    pub fn constant(&mut self, t: Tensor<B>) -> Var {
        self.push_value(Value::Owned(t), false)
    }

    /// A leaf value whose gradient [`Tape::backward`] reports (gradient checks).
    pub fn leaf(&mut self, t: Tensor<B>) -> Var {
        let rg = self.grad_enabled;
        self.push_value(Value::Owned(t), rg)
    }

    /// The value of `v`.
    pub fn value(&self, v: Var) -> &Tensor<B> {
        resolve(&self.values, self.params, v)
    }

    /// The shape of `v`.
    pub fn shape(&self, v: Var) -> &[usize] {
        self.value(v).shape()
    }

    /// Whether `v` needs a gradient.
    pub fn requires_grad(&self, v: Var) -> bool {
        self.requires_grad[v.0]
    }

    /// Appends an op's output. The backward record is kept only when
    /// gradients are enabled and some input needs one.
    pub fn push_op(
        &mut self,
        output: Tensor<B>,
        inputs: &[Var],
        backward: impl BackwardOp<B> + 'static,
    ) -> Var {
        let rg = self.grad_enabled && inputs.iter().any(|v| self.requires_grad[v.0]);
        let out = self.push_value(Value::Owned(output), rg);
        if rg {
            self.nodes.push(Node {
                output: out,
                backward: Box::new(backward),
            });
        }
        out
    }

    fn push_value(&mut self, value: Value<B>, requires_grad: bool) -> Var {
        self.values.push(value);
        self.requires_grad.push(requires_grad);
        Var(self.values.len() - 1)
    }

    /// Backpropagates from a scalar `loss` (seed gradient 1).
    pub fn backward(&self, loss: Var) -> Result<Grads<B>> {
        let numel = self.value(loss).numel();
        if numel != 1 {
            return Err(Error::Autograd(format!(
                "backward needs a scalar loss, got shape {:?}",
                self.shape(loss)
            )));
        }
        self.backward_with_seed(loss, self.backend.upload(&[1.0])?)
    }

    /// Backpropagates from `output` with an explicit seed gradient of the
    /// output's size (vector-Jacobian product).
    pub fn backward_with_seed(&self, output: Var, seed: B::Buf) -> Result<Grads<B>> {
        self.backward_from(vec![(output, seed)])
    }

    /// Backpropagates from several values at once, each with its seed
    /// gradient: the sum of their vector-Jacobian products. This is how a
    /// loss computed on another tape, from copies of these values, sends its
    /// gradient back through the ops that produced them.
    pub fn backward_from(&self, seeds: Vec<(Var, B::Buf)>) -> Result<Grads<B>> {
        if !self.grad_enabled {
            return Err(Error::Autograd("backward on a no-grad tape".into()));
        }
        let mut grads: Vec<Option<B::Buf>> = (0..self.values.len()).map(|_| None).collect();
        let mut last = 0;
        for (output, seed) in seeds {
            let numel = self.value(output).numel();
            if self.backend.len(&seed) != numel {
                return Err(Error::Autograd(format!(
                    "seed gradient has {} elements, output has {numel}",
                    self.backend.len(&seed)
                )));
            }
            if !self.requires_grad[output.0] {
                continue;
            }
            last = last.max(output.0);
            match &mut grads[output.0] {
                Some(acc) => self.backend.axpy(1.0, &seed, acc)?,
                slot @ None => *slot = Some(seed),
            }
        }
        for node in self.nodes[..]
            .iter()
            .rev()
            .skip_while(|n| n.output.0 > last)
        {
            let Some(g) = grads[node.output.0].take() else {
                continue;
            };
            let mut ctx = BackwardCtx {
                output: node.output,
                backend: &self.backend,
                values: &self.values,
                params: self.params,
                requires_grad: &self.requires_grad,
                grads: &mut grads,
            };
            node.backward.backward(&mut ctx, &g).map_err(|e| {
                Error::Autograd(format!("backward of {}: {e}", node.backward.name()))
            })?;
        }
        Ok(Grads {
            by_var: grads,
            param_vars: self.param_vars.clone(),
        })
    }
}

fn resolve<'a, B: BackendCore>(
    values: &'a [Value<B>],
    params: &'a ParamStore<B>,
    v: Var,
) -> &'a Tensor<B> {
    match &values[v.0] {
        Value::Owned(t) => t,
        Value::Param(id) => params.get(*id),
    }
}

/// What a [`BackwardOp`] sees: the forward values and the gradient table.
pub struct BackwardCtx<'a, B: BackendCore> {
    output: Var,
    backend: &'a B,
    values: &'a [Value<B>],
    params: &'a ParamStore<B>,
    requires_grad: &'a [bool],
    grads: &'a mut Vec<Option<B::Buf>>,
}

impl<B: BackendCore> BackwardCtx<'_, B> {
    /// The backend.
    pub fn backend(&self) -> &B {
        self.backend
    }

    /// The forward value of `v`.
    pub fn value(&self, v: Var) -> &Tensor<B> {
        resolve(self.values, self.params, v)
    }

    /// The output of the op being differentiated, for backwards that read
    /// their own forward result (softmax, attention).
    pub fn output(&self) -> Var {
        self.output
    }

    /// Whether `v` needs a gradient; ops skip work for inputs that do not.
    pub fn needs_grad(&self, v: Var) -> bool {
        self.requires_grad[v.0]
    }

    /// Adds `grad` to `v`'s gradient (takes it as the gradient if none yet).
    /// Does nothing when `v` needs no gradient.
    pub fn accumulate(&mut self, v: Var, grad: B::Buf) -> Result<()> {
        if !self.requires_grad[v.0] {
            return Ok(());
        }
        let expect = self.value(v).numel();
        if self.backend.len(&grad) != expect {
            return Err(Error::Autograd(format!(
                "gradient with {} elements for a value of {expect}",
                self.backend.len(&grad)
            )));
        }
        match &mut self.grads[v.0] {
            Some(acc) => self.backend.axpy(1.0, &grad, acc),
            slot @ None => {
                *slot = Some(grad);
                Ok(())
            }
        }
    }

    /// `v`'s gradient buffer, zero-initialised on first use, for kernels that
    /// accumulate in place (e.g. a GEMM with beta = 1). `None` when `v` needs
    /// no gradient.
    pub fn grad_mut(&mut self, v: Var) -> Result<Option<&mut B::Buf>> {
        if !self.requires_grad[v.0] {
            return Ok(None);
        }
        if self.grads[v.0].is_none() {
            let n = self.value(v).numel();
            self.grads[v.0] = Some(self.backend.zeros(n)?);
        }
        Ok(self.grads[v.0].as_mut())
    }

    /// The forward value of `v` together with `w`'s gradient buffer, for
    /// kernels that read one input while accumulating into another's gradient.
    pub fn value_and_grad_mut(
        &mut self,
        v: Var,
        w: Var,
    ) -> Result<(&Tensor<B>, Option<&mut B::Buf>)> {
        if self.requires_grad[w.0] && self.grads[w.0].is_none() {
            let n = resolve(self.values, self.params, w).numel();
            self.grads[w.0] = Some(self.backend.zeros(n)?);
        }
        let value = resolve(self.values, self.params, v);
        let grad = if self.requires_grad[w.0] {
            self.grads[w.0].as_mut()
        } else {
            None
        };
        Ok((value, grad))
    }
}

/// Gradients produced by one backward pass.
pub struct Grads<B: BackendCore> {
    by_var: Vec<Option<B::Buf>>,
    param_vars: Vec<Option<Var>>,
}

impl<B: BackendCore> Grads<B> {
    /// The gradient of a value (leaves and parameters keep theirs;
    /// intermediate gradients are freed during the pass).
    pub fn var(&self, v: Var) -> Option<&B::Buf> {
        self.by_var.get(v.0).and_then(Option::as_ref)
    }

    /// The gradient of a parameter, if it took part in the loss.
    pub fn param(&self, id: ParamId) -> Option<&B::Buf> {
        self.param_vars
            .get(id.index())
            .copied()
            .flatten()
            .and_then(|v| self.var(v))
    }

    /// The gradient of a parameter, mutably (clipping scales it in place).
    pub fn param_mut(&mut self, id: ParamId) -> Option<&mut B::Buf> {
        let v = self.param_vars.get(id.index()).copied().flatten()?;
        self.by_var.get_mut(v.0).and_then(Option::as_mut)
    }
}
