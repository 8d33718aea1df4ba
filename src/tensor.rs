//! An f32 tensor: a shape and one contiguous row-major buffer on a backend.

use crate::backend::BackendCore;
use crate::error::{Error, Result};

/// A contiguous row-major f32 tensor whose storage lives on backend `B`.
pub struct Tensor<B: BackendCore> {
    shape: Vec<usize>,
    buf: B::Buf,
}

impl<B: BackendCore> Tensor<B> {
    /// Wraps a buffer, checking that its length matches the shape.
    pub fn from_buf(backend: &B, shape: &[usize], buf: B::Buf) -> Result<Self> {
        let numel = shape.iter().product::<usize>();
        let len = backend.len(&buf);
        if len != numel {
            return Err(Error::shape(
                "tensor",
                format!("shape {shape:?} needs {numel} elements, buffer holds {len}"),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            buf,
        })
    }

    /// A tensor of zeros.
    pub fn zeros(backend: &B, shape: &[usize]) -> Result<Self> {
        let buf = backend.zeros(shape.iter().product())?;
        Ok(Tensor {
            shape: shape.to_vec(),
            buf,
        })
    }

    /// Copies host data into a new tensor.
    pub fn from_host(backend: &B, shape: &[usize], data: &[f32]) -> Result<Self> {
        Self::from_buf(backend, shape, backend.upload(data)?)
    }

    /// Copies the data back to the host.
    pub fn to_host(&self, backend: &B) -> Result<Vec<f32>> {
        backend.download(&self.buf)
    }

    /// A deep copy on the same backend.
    pub fn duplicate(&self, backend: &B) -> Result<Self> {
        Ok(Tensor {
            shape: self.shape.clone(),
            buf: backend.duplicate(&self.buf)?,
        })
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The storage.
    pub fn buf(&self) -> &B::Buf {
        &self.buf
    }

    /// The storage, mutably.
    pub fn buf_mut(&mut self) -> &mut B::Buf {
        &mut self.buf
    }

    /// The storage, consuming the tensor.
    pub fn into_buf(self) -> B::Buf {
        self.buf
    }

    /// The same data under a new shape with the same number of elements.
    pub fn reshaped(self, shape: &[usize]) -> Result<Self> {
        let numel = shape.iter().product::<usize>();
        if numel != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!("cannot view {:?} as {shape:?}", self.shape),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            buf: self.buf,
        })
    }
}

impl<B: BackendCore> std::fmt::Debug for Tensor<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}
