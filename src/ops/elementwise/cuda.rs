//! Elementwise kernels on the GPU (kernels/elementwise.cu): grid-stride
//! loops for the maps, and column sums in row chunks with a second pass over
//! the chunk partials when there is more than one chunk.

use crate::backend::cuda_kernels::{KernelId, ids};
use cudarc::driver::{CudaSlice, PushKernelArg};

use crate::backend::BackendCore;
use crate::backend::cuda::{
    BLOCK, CudaBackend, check_exact, driver_err, flat_grid, int, rows_per_split,
};
use crate::error::Result;
use crate::ops::elementwise::kernels::ElementwiseKernels;

impl CudaBackend {
    /// A flat map kernel `K.name(inputs..., n, [c,] out)` over `n` elements into a
    /// new buffer; `scalar` is the `float c` argument `scaled_f32` takes
    /// after `n`.
    fn map_kernel(
        &self,
        k: KernelId,
        inputs: &[&CudaSlice<f32>],
        scalar: Option<f32>,
        n: usize,
    ) -> Result<CudaSlice<f32>> {
        let mut out = self.zeros(n)?;
        if n == 0 {
            return Ok(out);
        }
        let ni = int(k.name, "length", n)?;
        let f = self.function(k)?;
        let cfg = self.config(&f, k.name, flat_grid(n), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        for x in inputs {
            l.arg(*x);
        }
        l.arg(&ni);
        if let Some(c) = scalar.as_ref() {
            l.arg(c);
        }
        l.arg(&mut out);
        // SAFETY: every input holds n floats (checked by the callers) and
        // out was allocated with n; the kernel touches [0, n) only.
        unsafe { l.launch(cfg) }.map_err(driver_err(k.name))?;
        Ok(out)
    }

    /// Column sums of a `rows × d` matrix into `out` (`sum_rows_f32`, with
    /// `rows_per_split` rows per chunk); `out` holds `S·d` floats for
    /// `S = ceil(rows / rows_per_split)` chunks.
    pub(crate) fn column_sums(
        &self,
        x: &CudaSlice<f32>,
        rows: usize,
        d: usize,
        split: usize,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        const K: KernelId = ids::elementwise::SUM_ROWS_F32;
        let chunks = rows.div_ceil(split);
        let (ri, di, si) = (
            int(K.name, "rows", rows)?,
            int(K.name, "d", d)?,
            int(K.name, "split", split)?,
        );
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, (d.div_ceil(32), chunks, 1), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(x).arg(&ri).arg(&di).arg(&si).arg(out);
        // SAFETY: x holds rows·d floats and out chunks·d (callers' checks
        // and allocations); blockIdx.y < chunks.
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(())
    }

    /// The column sums of `part`, `chunks × d` partials, as a new `d` buffer
    /// (one `sum_rows_f32` pass with a single chunk).
    pub(crate) fn reduce_partials(
        &self,
        part: &CudaSlice<f32>,
        chunks: usize,
        d: usize,
    ) -> Result<CudaSlice<f32>> {
        let mut out = self.zeros(d)?;
        self.column_sums(part, chunks, d, chunks, &mut out)?;
        Ok(out)
    }
}

impl ElementwiseKernels for CudaBackend {
    fn add(&self, a: &CudaSlice<f32>, b: &CudaSlice<f32>) -> Result<CudaSlice<f32>> {
        check_exact("add", "b", b, a.len())?;
        self.map_kernel(ids::elementwise::ADD_F32, &[a, b], None, a.len())
    }

    fn scaled(&self, x: &CudaSlice<f32>, c: f32) -> Result<CudaSlice<f32>> {
        self.map_kernel(ids::elementwise::SCALED_F32, &[x], Some(c), x.len())
    }

    fn add_row(
        &self,
        x: &CudaSlice<f32>,
        row: &CudaSlice<f32>,
        rows: usize,
        d: usize,
    ) -> Result<CudaSlice<f32>> {
        const K: KernelId = ids::elementwise::ADD_ROW_F32;
        let n = rows * d;
        check_exact("add_row", "x", x, n)?;
        check_exact("add_row", "row", row, d)?;
        let mut out = self.zeros(n)?;
        if n == 0 {
            return Ok(out);
        }
        int(K.name, "rows·d", n)?;
        let (ri, di) = (int(K.name, "rows", rows)?, int(K.name, "d", d)?);
        let f = self.function(K)?;
        let cfg = self.config(&f, K.name, flat_grid(n), BLOCK, 0)?;
        let mut l = self.stream().launch_builder(&f);
        l.arg(x).arg(row).arg(&ri).arg(&di).arg(&mut out);
        // SAFETY: x and out hold rows·d floats, row d (checked above).
        unsafe { l.launch(cfg) }.map_err(driver_err(K.name))?;
        Ok(out)
    }

    fn sum_rows(&self, x: &CudaSlice<f32>, rows: usize, d: usize) -> Result<CudaSlice<f32>> {
        let n = rows * d;
        check_exact("sum_rows", "x", x, n)?;
        if n == 0 {
            return self.zeros(d);
        }
        int("sum_rows", "rows·d", n)?;
        let split = rows_per_split(rows);
        let chunks = rows.div_ceil(split);
        let mut part = self.zeros(chunks * d)?;
        self.column_sums(x, rows, d, split, &mut part)?;
        if chunks == 1 {
            return Ok(part);
        }
        self.reduce_partials(&part, chunks, d)
    }

    fn gelu_fwd(&self, x: &CudaSlice<f32>) -> Result<CudaSlice<f32>> {
        self.map_kernel(ids::elementwise::GELU_FWD_F32, &[x], None, x.len())
    }

    fn gelu_bwd(&self, x: &CudaSlice<f32>, grad_out: &CudaSlice<f32>) -> Result<CudaSlice<f32>> {
        check_exact("gelu_bwd", "grad_out", grad_out, x.len())?;
        self.map_kernel(
            ids::elementwise::GELU_BWD_F32,
            &[x, grad_out],
            None,
            x.len(),
        )
    }

    fn sigmoid_fwd(&self, x: &CudaSlice<f32>) -> Result<CudaSlice<f32>> {
        self.map_kernel(ids::elementwise::SIGMOID_FWD_F32, &[x], None, x.len())
    }

    fn sigmoid_bwd(&self, y: &CudaSlice<f32>, grad_out: &CudaSlice<f32>) -> Result<CudaSlice<f32>> {
        check_exact("sigmoid_bwd", "grad_out", grad_out, y.len())?;
        self.map_kernel(
            ids::elementwise::SIGMOID_BWD_F32,
            &[y, grad_out],
            None,
            y.len(),
        )
    }
}
