//! Named model parameters.

use std::collections::HashMap;

use crate::backend::BackendCore;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Index of a parameter in its [`ParamStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub(crate) usize);

impl ParamId {
    /// Position in registration order.
    pub fn index(self) -> usize {
        self.0
    }
}

struct Entry<B: BackendCore> {
    name: String,
    value: Tensor<B>,
    decay: bool,
}

/// The model's parameters, each with a unique name (the key in checkpoints)
/// and a flag saying whether weight decay applies to it (not to biases and
/// norm gains).
pub struct ParamStore<B: BackendCore> {
    backend: B,
    entries: Vec<Entry<B>>,
    by_name: HashMap<String, ParamId>,
}

impl<B: BackendCore> ParamStore<B> {
    /// An empty store on `backend`.
    pub fn new(backend: B) -> Self {
        ParamStore {
            backend,
            entries: Vec::new(),
            by_name: HashMap::new(),
        }
    }

    /// The backend the parameters live on.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Registers a parameter; names must be unique.
    pub fn add(&mut self, name: &str, value: Tensor<B>, decay: bool) -> Result<ParamId> {
        if self.by_name.contains_key(name) {
            return Err(Error::invalid(
                "ParamStore::add",
                format!("parameter {name:?} is already registered"),
            ));
        }
        let id = ParamId(self.entries.len());
        self.entries.push(Entry {
            name: name.to_string(),
            value,
            decay,
        });
        self.by_name.insert(name.to_string(), id);
        Ok(id)
    }

    /// Number of parameters (tensors, not scalars).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no parameter is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total number of scalars over all parameters.
    pub fn numel(&self) -> usize {
        self.entries.iter().map(|e| e.value.numel()).sum()
    }

    /// All ids in registration order.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> + '_ {
        (0..self.entries.len()).map(ParamId)
    }

    /// Looks a parameter up by name.
    pub fn id(&self, name: &str) -> Option<ParamId> {
        self.by_name.get(name).copied()
    }

    /// A parameter's name.
    pub fn name(&self, id: ParamId) -> &str {
        &self.entries[id.0].name
    }

    /// Whether weight decay applies to the parameter.
    pub fn decays(&self, id: ParamId) -> bool {
        self.entries[id.0].decay
    }

    /// A parameter's value.
    pub fn get(&self, id: ParamId) -> &Tensor<B> {
        &self.entries[id.0].value
    }

    /// A parameter's value, mutably (the optimiser's update).
    pub fn get_mut(&mut self, id: ParamId) -> &mut Tensor<B> {
        &mut self.entries[id.0].value
    }
}
