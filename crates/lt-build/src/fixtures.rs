//! Writers of small datasets in the sources' exact published byte layouts,
//! from seeded generators. Tests and demos use them because no real CIFAR
//! or ImageNet copy can be downloaded here; the readers never see anything
//! but the published formats.

use lt_core::rng::Rng;
use std::io::Write;
use std::path::Path;

/// Seeded random pixels.
pub fn pixels(seed: u64, n: usize) -> Vec<u8> {
    let mut r = Rng::derive(seed, &[0xF1_7E]);
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        v.extend_from_slice(&r.next_u64().to_le_bytes());
    }
    v.truncate(n);
    v
}

/// Labels `0..classes` for `per_class` images each, in a seeded order.
pub fn labels(seed: u64, classes: usize, per_class: usize) -> Vec<u8> {
    let mut l: Vec<u8> = (0..classes * per_class).map(|i| (i % classes) as u8).collect();
    Rng::derive(seed, &[0x1AB]).shuffle(&mut l);
    l
}

/// Python 2 cPickle protocol-2 writer for the few shapes CIFAR uses,
/// emitting the same opcodes CPython 2.7 + numpy emit.
pub struct Py2Pickle {
    out: Vec<u8>,
    memo: u32,
}

impl Default for Py2Pickle {
    fn default() -> Self {
        Self::new()
    }
}

impl Py2Pickle {
    pub fn new() -> Self {
        Py2Pickle { out: vec![0x80, 2], memo: 0 }
    }
    fn put(&mut self) {
        if self.memo < 256 {
            self.out.extend_from_slice(&[b'q', self.memo as u8]);
        } else {
            self.out.push(b'r');
            self.out.extend_from_slice(&self.memo.to_le_bytes());
        }
        self.memo += 1;
    }
    /// A Python 2 `str`.
    pub fn str(&mut self, s: &[u8]) {
        if s.len() < 256 {
            self.out.extend_from_slice(&[b'U', s.len() as u8]);
        } else {
            self.out.push(b'T');
            self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        }
        self.out.extend_from_slice(s);
        self.put();
    }
    pub fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.out.extend_from_slice(&[b'K', v as u8]);
        } else if (0..65536).contains(&v) {
            self.out.push(b'M');
            self.out.extend_from_slice(&(v as u16).to_le_bytes());
        } else {
            self.out.push(b'J');
            self.out.extend_from_slice(&(v as i32).to_le_bytes());
        }
    }
    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        self.put();
    }
    /// A C-ordered uint8 numpy array, as numpy 1.x's `__reduce__` pickles it.
    pub fn uint8_array(&mut self, shape: &[usize], data: &[u8]) {
        self.global("numpy.core.multiarray", "_reconstruct");
        self.global("numpy", "ndarray");
        self.int(0);
        self.out.push(0x85); // TUPLE1
        self.put();
        self.str(b"b");
        self.out.push(0x87); // TUPLE3
        self.put();
        self.out.push(b'R');
        self.put();
        self.out.push(b'('); // state tuple
        self.int(1);
        for &d in shape {
            self.int(d as i64);
        }
        self.out.push(if shape.len() == 2 { 0x86 } else { 0x85 });
        self.put();
        self.global("numpy", "dtype");
        self.str(b"u1");
        self.int(0);
        self.int(1);
        self.out.push(0x87);
        self.put();
        self.out.push(b'R');
        self.put();
        self.out.push(b'(');
        self.int(3);
        self.str(b"|");
        self.out.extend_from_slice(b"NNN");
        self.int(-1);
        self.int(-1);
        self.int(0);
        self.out.push(b't');
        self.put();
        self.out.push(b'b'); // BUILD dtype
        self.out.push(0x89); // NEWFALSE (is_fortran)
        self.str(data);
        self.out.push(b't');
        self.put();
        self.out.push(b'b'); // BUILD array
    }
    pub fn int_list(&mut self, v: &[i64]) {
        self.out.push(b']');
        self.put();
        for chunk in v.chunks(1000) {
            self.out.push(b'(');
            for &x in chunk {
                self.int(x);
            }
            self.out.push(b'e');
        }
    }
    pub fn str_list(&mut self, v: &[&str]) {
        self.out.push(b']');
        self.put();
        self.out.push(b'(');
        for s in v {
            self.str(s.as_bytes());
        }
        self.out.push(b'e');
    }
    pub fn begin_dict(&mut self) {
        self.out.push(b'}');
        self.put();
        self.out.push(b'(');
    }
    pub fn end_dict(&mut self) {
        self.out.push(b'u');
    }
    pub fn finish(mut self) -> Vec<u8> {
        self.out.push(b'.');
        self.out
    }
}

fn batch_pickle(data: &[u8], labels: &[u8], label_key: &str, batch_label: &str, coarse: bool) -> Vec<u8> {
    let n = labels.len();
    let mut p = Py2Pickle::new();
    p.begin_dict();
    p.str(b"data");
    p.uint8_array(&[n, 3072], data);
    p.str(label_key.as_bytes());
    p.int_list(&labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
    if coarse {
        p.str(b"coarse_labels");
        p.int_list(&labels.iter().map(|&l| (l / 5) as i64).collect::<Vec<_>>());
    }
    p.str(b"batch_label");
    p.str(batch_label.as_bytes());
    p.str(b"filenames");
    p.str_list(&(0..n).map(|_| "img.png").collect::<Vec<_>>());
    p.end_dict();
    p.finish()
}

/// CIFAR images as CHW planes: the data of `labels.len()` images.
pub fn cifar_data(seed: u64, n: usize) -> Vec<u8> {
    pixels(seed, n * 3072)
}

/// Writes `cifar-10-batches-py/` (python) under `root` with `per_class`
/// train images per class split over 5 batches and `test_per_class` test
/// images per class. Returns (train data, train labels, test data, test labels).
pub fn write_cifar10_python(root: &Path, per_class: usize, test_per_class: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let dir = root.join("cifar-10-batches-py");
    std::fs::create_dir_all(&dir).unwrap();
    let tl = labels(1, 10, per_class);
    let td = cifar_data(2, tl.len());
    let n = tl.len();
    let per = n.div_ceil(5);
    for b in 0..5 {
        let r = (b * per).min(n)..((b + 1) * per).min(n);
        let bytes =
            batch_pickle(&td[r.start * 3072..r.end * 3072], &tl[r.clone()], "labels", &format!("training batch {} of 5", b + 1), false);
        std::fs::write(dir.join(format!("data_batch_{}", b + 1)), bytes).unwrap();
    }
    let vl = labels(3, 10, test_per_class);
    let vd = cifar_data(4, vl.len());
    std::fs::write(dir.join("test_batch"), batch_pickle(&vd, &vl, "labels", "testing batch 1 of 1", false)).unwrap();
    let mut p = Py2Pickle::new();
    p.begin_dict();
    p.str(b"num_cases_per_batch");
    p.int(per as i64);
    p.str(b"label_names");
    p.str_list(&["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]);
    p.str(b"num_vis");
    p.int(3072);
    p.end_dict();
    std::fs::write(dir.join("batches.meta"), p.finish()).unwrap();
    (td, tl, vd, vl)
}

/// Writes `cifar-100-python/{train,test,meta}`.
pub fn write_cifar100_python(root: &Path, per_class: usize, test_per_class: usize) -> (Vec<u8>, Vec<u8>) {
    let dir = root.join("cifar-100-python");
    std::fs::create_dir_all(&dir).unwrap();
    let tl = labels(5, 100, per_class);
    let td = cifar_data(6, tl.len());
    std::fs::write(dir.join("train"), batch_pickle(&td, &tl, "fine_labels", "training batch 1 of 1", true)).unwrap();
    let vl = labels(7, 100, test_per_class);
    let vd = cifar_data(8, vl.len());
    std::fs::write(dir.join("test"), batch_pickle(&vd, &vl, "fine_labels", "testing batch 1 of 1", true)).unwrap();
    let names: Vec<String> = (0..100).map(|c| format!("fine{c:02}")).collect();
    let coarse: Vec<String> = (0..20).map(|c| format!("coarse{c:02}")).collect();
    let mut p = Py2Pickle::new();
    p.begin_dict();
    p.str(b"fine_label_names");
    p.str_list(&names.iter().map(String::as_str).collect::<Vec<_>>());
    p.str(b"coarse_label_names");
    p.str_list(&coarse.iter().map(String::as_str).collect::<Vec<_>>());
    p.end_dict();
    std::fs::write(dir.join("meta"), p.finish()).unwrap();
    (td, tl)
}

/// Writes `cifar-10-batches-bin/` (binary distribution).
pub fn write_cifar10_binary(root: &Path, per_class: usize, test_per_class: usize) -> (Vec<u8>, Vec<u8>) {
    let dir = root.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let tl = labels(11, 10, per_class);
    let td = cifar_data(12, tl.len());
    let n = tl.len();
    let per = n.div_ceil(5);
    for b in 0..5 {
        let mut f = std::fs::File::create(dir.join(format!("data_batch_{}.bin", b + 1))).unwrap();
        for i in (b * per).min(n)..((b + 1) * per).min(n) {
            f.write_all(&[tl[i]]).unwrap();
            f.write_all(&td[i * 3072..(i + 1) * 3072]).unwrap();
        }
    }
    let vl = labels(13, 10, test_per_class);
    let vd = cifar_data(14, vl.len());
    let mut f = std::fs::File::create(dir.join("test_batch.bin")).unwrap();
    for i in 0..vl.len() {
        f.write_all(&[vl[i]]).unwrap();
        f.write_all(&vd[i * 3072..(i + 1) * 3072]).unwrap();
    }
    std::fs::write(dir.join("batches.meta.txt"), "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n").unwrap();
    (td, tl)
}

/// Writes `cifar-100-binary/{train,test}.bin` (coarse, fine, pixels records).
pub fn write_cifar100_binary(root: &Path, per_class: usize, test_per_class: usize) -> (Vec<u8>, Vec<u8>) {
    let dir = root.join("cifar-100-binary");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, l: &[u8], d: &[u8]| {
        let mut f = std::fs::File::create(dir.join(name)).unwrap();
        for i in 0..l.len() {
            f.write_all(&[l[i] / 5, l[i]]).unwrap();
            f.write_all(&d[i * 3072..(i + 1) * 3072]).unwrap();
        }
    };
    let tl = labels(15, 100, per_class);
    let td = cifar_data(16, tl.len());
    write("train.bin", &tl, &td);
    let vl = labels(17, 100, test_per_class);
    write("test.bin", &vl, &cifar_data(18, vl.len()));
    let names: String = (0..100).map(|c| format!("fine{c:02}\n")).collect();
    std::fs::write(dir.join("fine_label_names.txt"), names).unwrap();
    (td, tl)
}

/// IDX bytes for a u8 tensor of `dims`.
pub fn idx_bytes(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        v.extend_from_slice(&(d as u32).to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

/// Writes the four MNIST-family IDX files (gzipped when `gz`), `side`×`side`.
/// Returns (train pixels, train labels).
pub fn write_idx(dir: &Path, per_class: usize, test_per_class: usize, side: usize, gz: bool) -> (Vec<u8>, Vec<u8>) {
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, bytes: Vec<u8>| {
        if gz {
            let f = std::fs::File::create(dir.join(format!("{name}.gz"))).unwrap();
            let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            e.write_all(&bytes).unwrap();
            e.finish().unwrap();
        } else {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    };
    let tl = labels(21, 10, per_class);
    let tp = pixels(22, tl.len() * side * side);
    write("train-images-idx3-ubyte", idx_bytes(&[tl.len(), side, side], &tp));
    write("train-labels-idx1-ubyte", idx_bytes(&[tl.len()], &tl));
    let vl = labels(23, 10, test_per_class);
    write("t10k-images-idx3-ubyte", idx_bytes(&[vl.len(), side, side], &pixels(24, vl.len() * side * side)));
    write("t10k-labels-idx1-ubyte", idx_bytes(&[vl.len()], &vl));
    (tp, tl)
}

/// Writes an ImageNet-style tree `root/{train,val}/<class>/<i>.png` of RGB
/// PNGs with varied sizes. Returns, per train file (relative path), its pixels.
pub fn write_folder(root: &Path, classes: &[(&str, usize, usize)]) -> Vec<(String, lt_vision::codec::Decoded)> {
    let mut out = Vec::new();
    for (split, pick) in [("train", 0), ("val", 1)] {
        for (c, &(name, ntrain, nval)) in classes.iter().enumerate() {
            let n = if pick == 0 { ntrain } else { nval };
            let dir = root.join(split).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let (w, h) = (20 + (i % 5) as u32 * 3, 16 + (c % 3) as u32 * 4);
                let img = lt_vision::codec::Decoded {
                    width: w,
                    height: h,
                    channels: 3,
                    pixels: pixels(1000 * c as u64 + i as u64 + pick * 7919, (w * h * 3) as usize),
                };
                let rel = format!("{split}/{name}/{i:04}.png");
                std::fs::write(root.join(&rel), lt_vision::codec::encode_png(&img).unwrap()).unwrap();
                if pick == 0 {
                    out.push((rel, img));
                }
            }
        }
    }
    out
}
