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
            return Err(VisionError::Invalid(format!("{width}x{height}x{channels} image needs {want} bytes, got {}", pixels.len())));
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
        other if !other.color().has_color() => Decoded { width: w, height: h, channels: 1, pixels: other.into_luma8().into_raw() },
        other => Decoded { width: w, height: h, channels: 3, pixels: other.into_rgb8().into_raw() },
    }
}

/// Decodes keeping gray images gray (1 channel) and everything else RGB.
pub fn decode(bytes: &[u8]) -> Result<Decoded> {
    let img = image::load_from_memory(bytes).map_err(|e| VisionError::Decode(e.to_string()))?;
    Ok(from_dynamic(img))
}

/// Decodes like [`decode`], after checking that the file is complete
/// ([`check_complete`]). The `image` crate's JPEG decoder (zune-jpeg, in
/// its lenient mode) fills a truncated scan with grey and returns `Ok`, and
/// PNG's last chunks can go missing unnoticed; Pillow refuses such files,
/// so a builder that stores images for Python readers must too.
pub fn decode_strict(bytes: &[u8]) -> Result<Decoded> {
    check_complete(bytes)?;
    decode(bytes)
}

/// Checks the container structure of a JPEG or PNG without decoding pixels:
/// a premature end of data, or a structure a decoder would only warn about,
/// is an error that says where. Other formats pass (their decoders report
/// truncation themselves).
///
/// JPEG: SOI, then length-prefixed segments that fit in the file, a frame
/// header (SOF) and at least one scan (SOS) whose entropy-coded data is
/// followed by a marker, and the end-of-image marker (EOI). PNG: the
/// signature, then chunks whose lengths fit and whose CRCs match, IHDR
/// first, at least one IDAT, and IEND. Bytes after EOI / IEND are allowed
/// (some cameras append data there).
pub fn check_complete(bytes: &[u8]) -> Result<()> {
    let r = match sniff(bytes) {
        Some(Format::Jpeg) => check_jpeg(bytes),
        Some(Format::Png) => check_png(bytes),
        _ => Ok(()),
    };
    r.map_err(VisionError::Decode)
}

fn check_jpeg(b: &[u8]) -> std::result::Result<(), String> {
    let n = b.len();
    let truncated = |what: &str| format!("truncated JPEG ({n} bytes): the data ends {what}, before the end-of-image marker");
    if n < 4 || b[0] != 0xFF || b[1] != 0xD8 {
        return Err("not a JPEG file (no start-of-image marker)".into());
    }
    let (mut frame, mut scans) = (false, 0usize);
    let mut i = 2;
    loop {
        if i >= n {
            return Err(truncated("between segments"));
        }
        if b[i] != 0xFF {
            return Err(format!("corrupt JPEG: byte {i} is 0x{:02X} where a marker should start", b[i]));
        }
        while i < n && b[i] == 0xFF {
            i += 1; // fill bytes
        }
        if i >= n {
            return Err(truncated("inside a marker"));
        }
        let m = b[i];
        i += 1;
        match m {
            0xD9 => {
                if !frame || scans == 0 {
                    return Err("corrupt JPEG: end-of-image marker before any image data".into());
                }
                return Ok(());
            }
            // Restart markers and TEM carry no length.
            0xD0..=0xD7 | 0x01 => continue,
            0x00 | 0xD8 => return Err(format!("corrupt JPEG: unexpected marker 0xFF{m:02X} at byte {}", i - 2)),
            _ => {}
        }
        if i + 2 > n {
            return Err(truncated(&format!("in the length of segment 0xFF{m:02X}")));
        }
        let len = u16::from_be_bytes([b[i], b[i + 1]]) as usize;
        if len < 2 {
            return Err(format!("corrupt JPEG: segment 0xFF{m:02X} at byte {} has length {len}", i - 2));
        }
        if i + len > n {
            return Err(truncated(&format!("inside segment 0xFF{m:02X} (byte {} of {})", n - i, len)));
        }
        i += len;
        match m {
            // SOF0..SOF15 (C4 DHT, C8 JPG and CC DAC are not frame headers).
            0xC0..=0xCF if !matches!(m, 0xC4 | 0xC8 | 0xCC) => frame = true,
            0xDA => {
                if !frame {
                    return Err("corrupt JPEG: scan before the frame header".into());
                }
                scans += 1;
                // Entropy-coded data: 0xFF is followed by 0x00 (a stuffed
                // byte), a restart marker or fill; anything else ends it.
                loop {
                    let Some(p) = b[i..].iter().position(|&x| x == 0xFF) else {
                        return Err(truncated(&format!("inside the image data of scan {scans}")));
                    };
                    let j = i + p;
                    if j + 1 >= n {
                        return Err(truncated(&format!("inside the image data of scan {scans}")));
                    }
                    match b[j + 1] {
                        0x00 | 0xD0..=0xD7 => i = j + 2,
                        0xFF => i = j + 1,
                        _ => {
                            i = j;
                            break;
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// CRC-32 (ISO-HDLC, PNG's), table-driven.
fn crc32(parts: &[&[u8]]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut k = 0;
        while k < 256 {
            let mut c = k as u32;
            let mut j = 0;
            while j < 8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                j += 1;
            }
            t[k] = c;
            k += 1;
        }
        t
    };
    let mut c = 0xFFFF_FFFFu32;
    for p in parts {
        for &x in *p {
            c = TABLE[((c ^ x as u32) & 0xFF) as usize] ^ (c >> 8);
        }
    }
    c ^ 0xFFFF_FFFF
}

fn check_png(b: &[u8]) -> std::result::Result<(), String> {
    const SIG: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let n = b.len();
    if n < 8 || b[..8] != SIG {
        return Err("not a PNG file (bad signature)".into());
    }
    let truncated = |what: String| format!("truncated PNG ({n} bytes): the data ends {what}, before the IEND chunk");
    let mut i = 8;
    let mut idat = false;
    let mut first = true;
    loop {
        if i == n {
            return Err(truncated("after the last complete chunk".into()));
        }
        if i + 8 > n {
            return Err(truncated(format!("in a chunk header at byte {i}")));
        }
        let len = u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let ty = &b[i + 4..i + 8];
        let name = String::from_utf8_lossy(ty).into_owned();
        if len > 0x7FFF_FFFF {
            return Err(format!("corrupt PNG: chunk {name:?} at byte {i} has length {len}"));
        }
        if i + 12 + len > n {
            return Err(truncated(format!("inside chunk {name:?} at byte {i}")));
        }
        let data = &b[i + 8..i + 8 + len];
        let crc = u32::from_be_bytes([b[i + 8 + len], b[i + 9 + len], b[i + 10 + len], b[i + 11 + len]]);
        if crc32(&[ty, data]) != crc {
            return Err(format!("corrupt PNG: CRC mismatch in chunk {name:?} at byte {i}"));
        }
        if first && ty != b"IHDR" {
            return Err(format!("corrupt PNG: first chunk is {name:?}, not IHDR"));
        }
        first = false;
        match ty {
            b"IDAT" => idat = true,
            b"IEND" if !idat => return Err("corrupt PNG: IEND before any IDAT".into()),
            b"IEND" => return Ok(()),
            _ => {}
        }
        i += 12 + len;
    }
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

/// The DCT scale denominators libjpeg can decode at (Pillow's
/// `Image.draft` picks among the same).
pub const DRAFT_DENOMS: [u32; 4] = [1, 2, 4, 8];

/// Size of a `width × height` JPEG decoded at `1/denom`: libjpeg's
/// `ceil(side / denom)`.
pub fn draft_size(width: u32, height: u32, denom: u32) -> (u32, u32) {
    (width.div_ceil(denom), height.div_ceil(denom))
}

thread_local! {
    /// One libjpeg-turbo decompressor per thread (its set-up allocates).
    static TURBO: std::cell::RefCell<Option<turbojpeg::Decompressor>> = const { std::cell::RefCell::new(None) };
}

fn with_turbo<T>(f: impl FnOnce(&mut turbojpeg::Decompressor) -> turbojpeg::Result<T>) -> Result<T> {
    TURBO.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(turbojpeg::Decompressor::new().map_err(|e| VisionError::Decode(format!("libjpeg-turbo: {e}")))?);
        }
        f(slot.as_mut().expect("set above")).map_err(|e| VisionError::Decode(format!("libjpeg-turbo: {e}")))
    })
}

/// A JPEG's width and height from its header (no pixel decode).
pub fn jpeg_size(bytes: &[u8]) -> Result<(u32, u32)> {
    let h = with_turbo(|d| d.read_header(bytes))?;
    Ok((h.width as u32, h.height as u32))
}

/// Decodes a JPEG with libjpeg-turbo at `1/denom` of its size (`denom` in
/// [`DRAFT_DENOMS`]): the scaling happens in the inverse DCT, as in
/// Pillow's draft mode, so a smaller output costs less than a full decode.
/// Gray JPEGs stay gray, everything else becomes RGB. The bytes differ
/// slightly from [`decode`]'s (zune-jpeg) even at `denom = 1`: another IDCT
/// and chroma upsampling. Used by `loader.jpeg_draft` only; evaluation and
/// the default training path decode with [`decode`].
pub fn decode_jpeg_draft(bytes: &[u8], denom: u32) -> Result<Decoded> {
    if !DRAFT_DENOMS.contains(&denom) {
        return Err(VisionError::Invalid(format!("JPEG draft scale 1/{denom} is not one of 1, 1/2, 1/4, 1/8")));
    }
    with_turbo(|d| {
        let header = d.read_header(bytes)?;
        let gray = header.colorspace == turbojpeg::Colorspace::Gray;
        let (format, channels) = if gray { (turbojpeg::PixelFormat::GRAY, 1u8) } else { (turbojpeg::PixelFormat::RGB, 3u8) };
        d.set_scaling_factor(turbojpeg::ScalingFactor::new(1, denom as usize))?;
        let (w, h) = draft_size(header.width as u32, header.height as u32, denom);
        let pitch = w as usize * channels as usize;
        let mut pixels = vec![0u8; pitch * h as usize];
        let image = turbojpeg::Image { pixels: pixels.as_mut_slice(), width: w as usize, pitch, height: h as usize, format };
        d.decompress(bytes, image)?;
        Ok(Decoded { width: w, height: h, channels, pixels })
    })
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
        return Err(VisionError::Invalid(format!("JPEG quality must be in 1..=100, got {quality}")));
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
    let src = fr::images::ImageRef::new(img.width, img.height, &img.pixels, pt).map_err(|e| VisionError::Resize(e.to_string()))?;
    let mut dst = fr::images::Image::new(width, height, pt);
    let f = match filter {
        Filter::Bilinear => fr::FilterType::Bilinear,
        Filter::Lanczos3 => fr::FilterType::Lanczos3,
    };
    let opts = fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(f));
    fr::Resizer::new().resize(&src, &mut dst, &opts).map_err(|e| VisionError::Resize(e.to_string()))?;
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
    fn complete_files_pass_the_structure_check() {
        for c in [1, 3] {
            let png = encode_png(&gradient(40, 30, c)).unwrap();
            check_complete(&png).unwrap();
            let jpg = encode_jpeg(&gradient(40, 30, c), 90).unwrap();
            check_complete(&jpg).unwrap();
            assert_eq!(decode_strict(&jpg).unwrap(), decode(&jpg).unwrap());
            // Trailing bytes after EOI / IEND are allowed.
            check_complete(&[jpg.as_slice(), b"trailer"].concat()).unwrap();
            check_complete(&[png.as_slice(), b"trailer"].concat()).unwrap();
        }
    }

    #[test]
    fn crc32_matches_the_reference_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
    }

    #[test]
    fn jpeg_draft_decodes_at_reduced_scale() {
        // A smooth 67×45 RGB gradient and its gray version.
        let mut rgb = Vec::new();
        for y in 0..45u32 {
            for x in 0..67u32 {
                rgb.extend_from_slice(&[(x * 3) as u8, (y * 5) as u8, ((x + y) * 2) as u8]);
            }
        }
        let img = Decoded::try_new(67, 45, 3, rgb).unwrap();
        let gray = Decoded::try_new(67, 45, 1, img.pixels.chunks_exact(3).map(|p| p[1]).collect()).unwrap();
        for src in [&img, &gray] {
            let jpg = encode_jpeg(src, 95).unwrap();
            assert_eq!(jpeg_size(&jpg).unwrap(), (67, 45));
            let full = decode(&jpg).unwrap();
            for denom in DRAFT_DENOMS {
                let d = decode_jpeg_draft(&jpg, denom).unwrap();
                assert_eq!((d.width, d.height), draft_size(67, 45, denom));
                assert_eq!(d.channels, src.channels);
                // Close to the full decode's pixel at the block's centre.
                if denom <= 2 {
                    let c = src.channels as usize;
                    let (x, y) = (20usize, 10usize);
                    let ours = d.pixels[(y * d.width as usize + x) * c] as i32;
                    let want = full.pixels[((y * denom as usize) * 67 + x * denom as usize) * c] as i32;
                    assert!((ours - want).abs() <= 12, "1/{denom}: {ours} vs {want}");
                }
            }
            // libjpeg-turbo at full scale is within a level or two of zune-jpeg.
            let d = decode_jpeg_draft(&jpg, 1).unwrap();
            let worst = d.pixels.iter().zip(&full.pixels).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
            assert!(worst <= 3, "libjpeg-turbo vs zune-jpeg: {worst} levels");
        }
        assert_eq!(draft_size(67, 45, 8), (9, 6));
        assert!(decode_jpeg_draft(&encode_jpeg(&img, 90).unwrap(), 3).is_err());
        assert!(decode_jpeg_draft(b"not a jpeg", 2).is_err());
        assert!(jpeg_size(&encode_png(&img).unwrap()).is_err());
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
