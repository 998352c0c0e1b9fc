//! # lt-vision
//!
//! Decode, encode, resize and augmentation kernels on plain byte buffers
//! (interleaved HWC `u8`), shared by the builder and the loader. No tensors,
//! no libtorch.
//!
//! ```
//! use lt_vision::codec::{Decoded, encode_png, decode};
//! let img = Decoded { width: 2, height: 1, channels: 3, pixels: vec![1, 2, 3, 4, 5, 6] };
//! let png = encode_png(&img).unwrap();
//! assert_eq!(decode(&png).unwrap(), img);
//! ```

pub mod augment;
pub mod augment_randaugment;
pub mod augment_timm;
pub mod codec;
pub mod hwc;
mod kernels;
pub mod photometric;
#[doc(hidden)]
pub mod reference;
mod simd;

/// Errors of the image kernels.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VisionError {
    #[error("cannot decode image: {0}")]
    Decode(String),
    #[error("cannot encode image: {0}")]
    Encode(String),
    #[error("cannot resize image: {0}")]
    Resize(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = VisionError> = std::result::Result<T, E>;
