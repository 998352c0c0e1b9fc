//! Seeded fixtures shared by the loader's integration tests.
#![allow(dead_code)]

use lt_core::rng::Rng;
use lt_loader::source::{Encoded, EncodedSource, MemorySource};
use lt_loader::{LoaderError, Result};
use lt_vision::codec::{encode_png, Decoded};
use std::sync::mpsc;
use std::time::Duration;

/// A seeded `w × h × c` image: a gradient plus noise, so crops differ.
pub fn image(seed: u64, w: u32, h: u32, c: u8) -> Decoded {
    let mut rng = Rng::derive(seed, &[w as u64, h as u64]);
    let px = (0..w * h * c as u32).map(|i| ((i * 3 + (i / (w * c as u32)) * 5) as u64 % 200 + rng.below(56)) as u8).collect();
    Decoded::try_new(w, h, c, px).unwrap()
}

/// Long-tailed labels: class c has `counts[c]` rows, rows shuffled.
pub fn labels(counts: &[usize], seed: u64) -> Vec<i64> {
    let mut v: Vec<i64> = counts.iter().enumerate().flat_map(|(c, &n)| std::iter::repeat_n(c as i64, n)).collect();
    Rng::new(seed).shuffle(&mut v);
    v
}

/// PNG rows of `w × h` RGB images with the given labels.
pub fn png_rows(labels: &[i64], w: u32, h: u32) -> Vec<(Vec<u8>, i64)> {
    labels.iter().enumerate().map(|(i, &l)| (encode_png(&image(i as u64, w, h, 3)).unwrap(), l)).collect()
}

pub fn memory_source(n: usize, w: u32, h: u32) -> MemorySource {
    let l = labels(&[n / 2, n / 4, n / 8, n - n / 2 - n / 4 - n / 8], 1);
    let names = (0..n).map(|i| format!("img/{i:04}.png")).collect();
    MemorySource::new(png_rows(&l, w, h)).with_names(names)
}

/// How a [`Faulty`] source misbehaves on its bad row.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Bytes that are not an image.
    Corrupt,
    /// `fetch` returns an error.
    ReadError,
    /// `fetch` panics (a bug in a worker).
    Panic,
}

/// Wraps a source and breaks one row.
pub struct Faulty<S> {
    pub inner: S,
    pub bad: usize,
    pub fault: Fault,
}

impl<S: EncodedSource> EncodedSource for Faulty<S> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn labels(&self) -> &[i64] {
        self.inner.labels()
    }
    fn fetch(&self, i: usize) -> Result<Encoded> {
        if i == self.bad {
            match self.fault {
                Fault::Corrupt => return Ok(Encoded::from_vec(b"\x89PNG\r\n\x1a\n truncated".to_vec())),
                Fault::ReadError => return Err(LoaderError::Read { location: self.locate(i), message: "injected I/O error".into() }),
                Fault::Panic => panic!("injected worker panic at row {i}"),
            }
        }
        self.inner.fetch(i)
    }
    fn locate(&self, i: usize) -> String {
        self.inner.locate(i)
    }
}

/// Runs `f` on a thread and fails the test if it takes longer than `secs`
/// (a hang), instead of hanging the test binary.
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs)).expect("the loader hung (no result within the time limit)")
}
