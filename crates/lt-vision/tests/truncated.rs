//! Strict decoding: truncated JPEGs and PNGs (written here with the `image`
//! crate) are errors at every cut point, while complete files — our own
//! encodes, the repository's fixtures and real photographs found on the
//! machine — still decode.
use image::ImageEncoder;
use lt_vision::codec::{check_complete, decode, decode_strict};
use std::path::{Path, PathBuf};

/// A seeded, photo-like RGB image (smooth gradients plus noise) so the
/// encoders produce files of realistic size.
fn scene(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for xx in 0..w {
            for c in 0..3u32 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let v = (xx * (c + 1) * 255 / w + y * 255 / h) / 2 + (x % 32);
                px.push(v.min(255) as u8);
            }
        }
    }
    px
}

fn jpeg(w: u32, h: u32, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .write_image(&scene(w, h, 1), w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out).write_image(&scene(w, h, 2), w, h, image::ExtendedColorType::Rgb8).unwrap();
    out
}

fn cut_points(n: usize) -> Vec<usize> {
    let mut v = vec![2, 20, 100, 300, 700, n / 4, n / 2, 3 * n / 4, n - 100, n - 3, n - 2, n - 1];
    v.retain(|&c| c > 0 && c < n);
    v.sort();
    v.dedup();
    v
}

#[test]
fn truncated_jpegs_fail_at_every_cut_point() {
    for (w, h, q) in [(256, 192, 90), (97, 61, 75), (640, 480, 95)] {
        let full = jpeg(w, h, q);
        assert!(full.len() > 1000, "{}", full.len());
        decode_strict(&full).unwrap();
        for cut in cut_points(full.len()) {
            let e = decode_strict(&full[..cut]).expect_err(&format!("{w}x{h} JPEG cut to {cut} of {} bytes decoded", full.len()));
            let t = e.to_string();
            assert!(t.contains("truncated JPEG") || t.contains("cannot decode"), "cut {cut}: {t}");
        }
    }
}

/// The defect: the lenient decoder returned `Ok` for a JPEG cut to 700 bytes
/// or to half its size (zune-jpeg fills the missing scan with grey).
#[test]
fn the_700_byte_and_half_jpegs_of_the_report_are_refused() {
    let full = jpeg(256, 192, 90);
    for cut in [700, full.len() / 2] {
        let e = decode_strict(&full[..cut]).unwrap_err().to_string();
        assert!(e.contains("truncated JPEG") && e.contains(&format!("({cut} bytes)")), "{e}");
    }
}

#[test]
fn truncated_pngs_fail_at_every_cut_point() {
    for (w, h) in [(256, 192), (33, 17)] {
        let full = png(w, h);
        decode_strict(&full).unwrap();
        for cut in cut_points(full.len()) {
            let e = decode_strict(&full[..cut]).expect_err(&format!("{w}x{h} PNG cut to {cut} of {} bytes decoded", full.len()));
            let t = e.to_string();
            assert!(t.contains("truncated PNG") || t.contains("cannot decode"), "cut {cut}: {t}");
        }
        // Exactly the IEND chunk missing (the lenient decoder accepts it).
        let e = decode_strict(&full[..full.len() - 12]).unwrap_err().to_string();
        assert!(e.contains("truncated PNG"), "{e}");
    }
}

#[test]
fn flipped_bits_inside_png_chunks_are_caught_by_the_crc() {
    let mut b = png(64, 64);
    let mid = b.len() / 2;
    b[mid] ^= 0x10;
    let e = check_complete(&b).unwrap_err().to_string();
    assert!(e.contains("CRC mismatch"), "{e}");
}

fn images_below(dir: &Path, out: &mut Vec<PathBuf>, cap: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if out.len() >= cap {
            return;
        }
        if p.is_symlink() {
            continue;
        }
        if p.is_dir() {
            images_below(&p, out, cap);
        } else if p.extension().and_then(|e| e.to_str()).is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(p);
        }
    }
}

/// Complete files must not be refused. The repository's fixtures always;
/// real photographs from `LT_PHOTOS` (a folder searched recursively) or, by
/// default, from a few places that hold some on a typical machine.
#[test]
fn complete_fixtures_and_real_photographs_still_decode() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let fixtures = root.join("crates/lt-loader/tests/fixtures");
    let mut files = Vec::new();
    images_below(&fixtures, &mut files, 100);
    assert!(files.iter().any(|p| p.ends_with("gradient_progressive.jpg")), "{files:?}");
    let dirs: Vec<PathBuf> = match std::env::var_os("LT_PHOTOS") {
        Some(d) => vec![PathBuf::from(d)],
        None => {
            let mut v: Vec<PathBuf> =
                ["/usr/share/backgrounds", "/usr/share/pixmaps", "/usr/share/wallpapers"].iter().map(PathBuf::from).collect();
            if let Some(home) = std::env::var_os("HOME") {
                v.push(Path::new(&home).join(".rustup/toolchains"));
            }
            v
        }
    };
    for d in dirs {
        images_below(&d, &mut files, 2000);
    }
    let mut checked = 0;
    for p in &files {
        let b = std::fs::read(p).unwrap();
        // Only files the lenient decoder reads as a whole are expected to pass.
        if decode(&b).is_err() {
            continue;
        }
        if let Err(e) = decode_strict(&b) {
            panic!("{} decodes but is refused by the strict check: {e}", p.display());
        }
        checked += 1;
    }
    eprintln!("{checked} complete image files pass the strict check");
    assert!(checked >= 2, "{files:?}");
}
