//! Batch buffers backed by libtorch tensors, for lt-loader's
//! [`BatchAllocator`] seam.
//!
//! With `pinned = true` and CUDA present, each buffer is a page-locked uint8
//! tensor, so a batch reaches the device with one non-blocking DMA
//! ([`batch_to_device`]). Without CUDA the same code path runs on ordinary
//! tensor memory, which keeps it testable on CPU.
//!
//! Reuse rule: the loader recycles a buffer when its [`Batch`] is dropped.
//! The trainer keeps the batch alive until the step has read its loss back
//! (a device synchronisation), so a buffer is never rewritten while its copy
//! may still be in flight.

use std::any::Any;

use lt_loader::batch::{Batch, BatchAllocator, BatchStorage};
use lt_loader::LoaderError;
use tch::{Device, Kind, Tensor};

use crate::error::{GlmcError, Result, TorchContext};

/// One buffer: a flat uint8 CPU tensor.
pub struct TensorStorage {
    tensor: Tensor,
    len: usize,
    pinned: bool,
}

impl TensorStorage {
    /// The whole buffer as a flat uint8 tensor (shares memory).
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }
    pub fn is_pinned(&self) -> bool {
        self.pinned
    }
}

impl BatchStorage for TensorStorage {
    fn as_slice(&self) -> &[u8] {
        // SAFETY: the tensor is a contiguous CPU uint8 tensor of `len`
        // elements that this storage owns; its data never moves.
        unsafe { std::slice::from_raw_parts(self.tensor.data_ptr() as *const u8, self.len) }
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.tensor.data_ptr() as *mut u8, self.len) }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Allocates [`TensorStorage`]: pinned when asked and CUDA is present.
#[derive(Clone, Copy, Debug)]
pub struct TensorAllocator {
    pinned: bool,
}

impl TensorAllocator {
    /// `pinned` is honoured only when CUDA is available.
    pub fn new(pinned: bool) -> Self {
        TensorAllocator { pinned: pinned && tch::Cuda::is_available() }
    }
    pub fn pinned(&self) -> bool {
        self.pinned
    }
}

impl BatchAllocator for TensorAllocator {
    fn allocate(&self, bytes: usize) -> lt_loader::Result<Box<dyn BatchStorage>> {
        let alloc = || -> std::result::Result<Tensor, tch::TchError> {
            let t = Tensor::f_zeros([bytes.max(1) as i64], (Kind::Uint8, Device::Cpu))?;
            if self.pinned {
                t.f_pin_memory(Device::Cuda(0))
            } else {
                Ok(t)
            }
        };
        let tensor = alloc().map_err(|e| LoaderError::Alloc { bytes, message: e.to_string() })?;
        Ok(Box::new(TensorStorage { tensor, len: bytes, pinned: self.pinned }))
    }
}

/// The batch's pixels on `device` as uint8 `[views, slots, C, H, W]`, plus
/// its labels as int64 `[slots]`. Tensor-backed batches are copied without
/// blocking (pinned) or without an intermediate copy (CPU); others through
/// a slice copy.
pub fn batch_to_device(batch: &Batch, device: Device) -> Result<(Tensor, Tensor)> {
    let shape = [batch.views as i64, batch.slots() as i64, batch.channels as i64, batch.height as i64, batch.width as i64];
    let n = batch.data().len() as i64;
    let host = match batch.storage().as_any().downcast_ref::<TensorStorage>() {
        Some(s) => s.tensor().f_narrow(0, 0, n).ctx(|| "batch buffer".into())?,
        None => Tensor::f_from_slice(batch.data())?,
    };
    let host = host.f_view(shape)?;
    // Labels first: a copy from pageable memory synchronises the stream, so
    // issued after the pixels it would wait for their asynchronous copy and
    // make it blocking in effect. Issued first, it finds the stream idle (the
    // previous step's loss read-back already synchronised it), and the
    // pinned pixel copy then returns at once.
    let y = Tensor::f_from_slice(&batch.labels)?.f_to_device_(device, Kind::Int64, false, false)?;
    let x = if device == Device::Cpu { host } else { host.f_to_device_(device, Kind::Uint8, true, false)? };
    if x.size() != shape {
        return Err(GlmcError::Shape { what: "batch", got: x.size(), expected: format!("{shape:?}") });
    }
    Ok((x, y))
}
