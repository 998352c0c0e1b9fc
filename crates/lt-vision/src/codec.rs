//! Decoding and encoding. Images are interleaved HWC `u8` with 1 (gray) or
//! 3 (RGB) channels; alpha is dropped and 16-bit samples are reduced to 8.

use crate::{Result, VisionError};
use fast_image_resize as fr;
use image::{ImageEncoder, ImageFormat};

/// An 8-bit image, interleaved HWC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    /// 1 (gray) or 3 (RGB).
    pub channels: u8,
    pub pixels: Vec<u8>,
}

impl Decoded {
    /// Checks that the buffer length matches the dimensions.
    pub fn try_new(width: u32, height: u32, channels: u8, pixels: Vec<u8>) -> Result<Self> {
        let want = width as usize * height as usize * channels as usize;
        if !(channels == 1 || channels == 3) || pixels.len() != want {
            return Err(VisionError::Invalid(format!(
                "{width}x{height}x{channels} image needs {want} bytes, got {}",
                pixels.len()
            )));
        }
        Ok(Decoded { width, height, channels, pixels })
    }

    /// The same image with three channels (gray is replicated).
    pub fn to_rgb(&self) -> Decoded {
        if self.channels == 3 {
            return self.clone();
        }
        let mut px = Vec::with_capacity(self.pixels.len() * 3);
        for &g in &self.pixels {
            px.extend_from_slice(&[g, g, g]);
        }
        Decoded { width: self.width, height: self.height, channels: 3, pixels: px }
    }
}

/// Encoded formats the pipeline distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    /// Anything else `image` can read (re-encoded as PNG by the builder).
    Other,
}

/// The format from the magic bytes, or `None` when it is not an image.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    match image::guess_format(bytes).ok()? {
        ImageFormat::Jpeg => Some(Format::Jpeg),
        ImageFormat::Png => Some(Format::Png),
        _ => Some(Format::Other),
    }
}

fn from_dynamic(img: image::DynamicImage) -> Decoded {
    use image::DynamicImage as D;
    let (w, h) = (img.width(), img.height());
    match img {
        D::ImageLuma8(b) => Decoded { width: w, height: h, channels: 1, pixels: b.into_raw() },
        D::ImageRgb8(b) => Decoded { width: w, height: h, channels: 3, pixels: b.into_raw() },
        other if !other.color().has_color() => Decoded {
            width: w,
            height: h,
            channels: 1,
            pixels: other.into_luma8().into_raw(),
        },
        other => Decoded { width: w, height: h, channels: 3, pixels: other.into_rgb8().into_raw() },
    }
}

/// Decodes keeping gray images gray (1 channel) and everything else RGB.
pub fn decode(bytes: &[u8]) -> Result<Decoded> {
    let img = image::load_from_memory(bytes).map_err(|e| VisionError::Decode(e.to_string()))?;
    Ok(from_dynamic(img))
}

/// Decodes to three channels whatever the source (ImageNet convention).
pub fn decode_rgb(bytes: &[u8]) -> Result<Decoded> {
    let d = decode(bytes)?;
    Ok(d.to_rgb())
}

/// Width and height from the header alone (no pixel decode).
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32)> {
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| VisionError::Decode(e.to_string()))?
        .into_dimensions()
        .map_err(|e| VisionError::Decode(e.to_string()))
}

fn color(channels: u8) -> image::ExtendedColorType {
    if channels == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    }
}

/// Lossless PNG (fast compression: images are stored once and decoded often,
/// and PNG's deflate level barely changes decode time).
pub fn encode_png(img: &Decoded) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(img.pixels.len() / 2 + 64);
    image::codecs::png::PngEncoder::new_with_quality(
        &mut out,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::Adaptive,
    )
    .write_image(&img.pixels, img.width, img.height, color(img.channels))
    .map_err(|e| VisionError::Encode(e.to_string()))?;
    Ok(out)
}

/// Baseline JPEG at `quality` (1–100).
pub fn encode_jpeg(img: &Decoded, quality: u8) -> Result<Vec<u8>> {
    if !(1..=100).contains(&quality) {
        return Err(VisionError::Invalid(format!("--quality must be in 1..=100, got {quality}")));
    }
    let mut out = Vec::with_capacity(img.pixels.len() / 8 + 1024);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .write_image(&img.pixels, img.width, img.height, color(img.channels))
        .map_err(|e| VisionError::Encode(e.to_string()))?;
    Ok(out)
}

/// Size that fits `max_side` keeping the aspect ratio (never upscales).
pub fn fit_max_side(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let long = width.max(height);
    if long <= max_side {
        return (width, height);
    }
    let s = max_side as f64 / long as f64;
    let w = ((width as f64 * s).round() as u32).max(1);
    let h = ((height as f64 * s).round() as u32).max(1);
    (w, h)
}

/// Resampling filter for [`resize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Bilinear with antialiasing on downscale (torchvision's default).
    Bilinear,
    /// Lanczos3, for offline re-encodes where quality matters more.
    Lanczos3,
}

/// Resizes with fast_image_resize (SIMD convolution; antialiased downscale).
pub fn resize(img: &Decoded, width: u32, height: u32, filter: Filter) -> Result<Decoded> {
    if (width, height) == (img.width, img.height) {
        return Ok(img.clone());
    }
    let pt = if img.channels == 1 { fr::PixelType::U8 } else { fr::PixelType::U8x3 };
    let src = fr::images::ImageRef::new(img.width, img.height, &img.pixels, pt)
        .map_err(|e| VisionError::Resize(e.to_string()))?;
    let mut dst = fr::images::Image::new(width, height, pt);
    let f = match filter {
        Filter::Bilinear => fr::FilterType::Bilinear,
        Filter::Lanczos3 => fr::FilterType::Lanczos3,
    };
    let opts = fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(f));
    fr::Resizer::new()
        .resize(&src, &mut dst, &opts)
        .map_err(|e| VisionError::Resize(e.to_string()))?;
    Ok(Decoded { width, height, channels: img.channels, pixels: dst.into_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32, c: u8) -> Decoded {
        let pixels = (0..w * h * c as u32).map(|i| (i * 7 % 251) as u8).collect();
        Decoded::try_new(w, h, c, pixels).unwrap()
    }

    #[test]
    fn png_round_trips_gray_and_rgb() {
        for c in [1, 3] {
            let img = gradient(13, 7, c);
            let png = encode_png(&img).unwrap();
            assert_eq!(sniff(&png), Some(Format::Png));
            assert_eq!(decode(&png).unwrap(), img);
            assert_eq!(dimensions(&png).unwrap(), (13, 7));
        }
    }

    #[test]
    fn jpeg_encodes_and_decodes_close() {
        let img = Decoded::try_new(16, 16, 3, vec![120; 16 * 16 * 3]).unwrap();
        let jpg = encode_jpeg(&img, 95).unwrap();
        assert_eq!(sniff(&jpg), Some(Format::Jpeg));
        let back = decode(&jpg).unwrap();
        assert_eq!((back.width, back.height, back.channels), (16, 16, 3));
        assert!(back.pixels.iter().all(|&p| (p as i32 - 120).abs() <= 2));
        assert!(encode_jpeg(&img, 0).is_err());
    }

    #[test]
    fn corrupt_bytes_fail_to_decode() {
        let png = encode_png(&gradient(20, 20, 3)).unwrap();
        assert!(decode(&png[..png.len() / 2]).is_err());
        assert!(decode(b"not an image at all").is_err());
    }

    #[test]
    fn fit_and_resize() {
        assert_eq!(fit_max_side(500, 375, 256), (256, 192));
        assert_eq!(fit_max_side(100, 50, 256), (100, 50));
        let img = gradient(64, 32, 3);
        let r = resize(&img, 32, 16, Filter::Bilinear).unwrap();
        assert_eq!((r.width, r.height, r.pixels.len()), (32, 16, 32 * 16 * 3));
        // A constant image stays constant under resampling.
        let flat = Decoded::try_new(40, 30, 1, vec![77; 1200]).unwrap();
        let r = resize(&flat, 17, 11, Filter::Lanczos3).unwrap();
        assert!(r.pixels.iter().all(|&p| p == 77));
    }
}
