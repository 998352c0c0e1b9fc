//! Seeded random streams that do not change with crate versions.
//!
//! Every random decision in lt-glmc is a pure function of a root seed and a
//! path of keys (`stream`, epoch, step, slot, …). [`Rng::derive`] hashes the
//! path with SplitMix64 into a Xoshiro256++ state, so workers can create the
//! generator for a sample independently and the result does not depend on the
//! thread count or on the order in which work is done.

/// SplitMix64 step: used to expand seeds and to mix key paths.
#[inline]
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Xoshiro256++ generator with a few distributions the pipeline needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator seeded from a single 64-bit seed.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut s = [0u64; 4];
        for w in &mut s {
            *w = splitmix64(&mut sm);
        }
        if s == [0; 4] {
            s[0] = 1;
        }
        Rng { s }
    }

    /// A generator for the key path `keys` under `seed`: the same path always
    /// gives the same stream, different paths give independent streams.
    pub fn derive(seed: u64, keys: &[u64]) -> Self {
        let mut h = seed ^ 0x6C74_2D67_6C6D_6300; // "lt-glmc"
        let mut acc = splitmix64(&mut h);
        for &k in keys {
            let mut st = acc ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            acc = splitmix64(&mut st) ^ splitmix64(&mut st).rotate_left(17);
        }
        Rng::new(acc)
    }

    /// The raw state, for checkpoints.
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// Restore a generator saved with [`Rng::state`].
    pub fn from_state(s: [u64; 4]) -> Self {
        Rng { s }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let result = (self.s[0].wrapping_add(self.s[3])).rotate_left(23).wrapping_add(self.s[0]);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    #[inline]
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform integer in [0, n) without modulo bias (Lemire's method).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        let mut m = (self.next_u64() as u128) * (n as u128);
        let mut low = m as u64;
        if low < n {
            let t = n.wrapping_neg() % n;
            while low < t {
                m = (self.next_u64() as u128) * (n as u128);
                low = m as u64;
            }
        }
        (m >> 64) as u64
    }

    /// True with probability `p`.
    #[inline]
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }

    /// `k` distinct elements of `0..n`, in the order drawn (partial
    /// Fisher–Yates over an index vector).
    pub fn choose_without_replacement(&mut self, n: usize, k: usize) -> Vec<usize> {
        assert!(k <= n, "cannot choose {k} of {n}");
        let mut idx: Vec<usize> = (0..n).collect();
        for i in 0..k {
            let j = i + self.below((n - i) as u64) as usize;
            idx.swap(i, j);
        }
        idx.truncate(k);
        idx
    }

    /// Standard normal (Box–Muller; one value per call, simple and stable).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Gamma(shape, 1) by Marsaglia–Tsang (with the shape < 1 boost).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        assert!(shape > 0.0, "gamma shape must be > 0");
        if shape < 1.0 {
            let u = 1.0 - self.next_f64();
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = 1.0 - self.next_f64();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }

    /// Beta(a, b) from two gammas.
    pub fn beta(&mut self, a: f64, b: f64) -> f64 {
        let x = self.gamma(a);
        let y = self.gamma(b);
        x / (x + y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_is_a_pure_function_of_the_path() {
        let a = Rng::derive(7, &[1, 2, 3]).next_u64();
        let b = Rng::derive(7, &[1, 2, 3]).next_u64();
        let c = Rng::derive(7, &[1, 2, 4]).next_u64();
        let d = Rng::derive(8, &[1, 2, 3]).next_u64();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        // Key order matters.
        assert_ne!(Rng::derive(7, &[2, 1]).next_u64(), Rng::derive(7, &[1, 2]).next_u64());
    }

    #[test]
    fn stream_is_pinned() {
        // Pins the generator so a refactor cannot silently change every
        // selection and augmentation made with an existing seed.
        let mut r = Rng::new(0);
        let v: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        let mut r2 = Rng::new(0);
        assert_eq!(v, (0..3).map(|_| r2.next_u64()).collect::<Vec<_>>());
        assert_eq!(Rng::new(0).below(10), Rng::new(0).below(10));
        assert_eq!(v[0], 0x53175d61490b23df, "xoshiro256++ seeded by splitmix64(0)");
    }

    #[test]
    fn below_is_uniform_enough() {
        let mut r = Rng::new(42);
        let mut hist = [0usize; 7];
        for _ in 0..70_000 {
            hist[r.below(7) as usize] += 1;
        }
        for h in hist {
            assert!((h as i64 - 10_000).abs() < 500, "{hist:?}");
        }
    }

    #[test]
    fn beta_mean_and_variance() {
        let mut r = Rng::new(3);
        let n = 40_000;
        let (a, b) = (2.0, 5.0);
        let xs: Vec<f64> = (0..n).map(|_| r.beta(a, b)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - a / (a + b)).abs() < 0.005, "mean {mean}");
        let want_var = a * b / ((a + b).powi(2) * (a + b + 1.0));
        assert!((var - want_var).abs() < 0.002, "var {var}");
        // Beta(1,1) is uniform: mean 1/2, variance 1/12.
        let ys: Vec<f64> = (0..n).map(|_| r.beta(1.0, 1.0)).collect();
        let m = ys.iter().sum::<f64>() / n as f64;
        assert!((m - 0.5).abs() < 0.01);
        assert!(ys.iter().all(|&y| (0.0..=1.0).contains(&y)));
    }

    #[test]
    fn choose_without_replacement_is_distinct() {
        let mut r = Rng::new(9);
        let mut v = r.choose_without_replacement(100, 40);
        v.sort();
        v.dedup();
        assert_eq!(v.len(), 40);
        assert!(v.iter().all(|&i| i < 100));
    }
}
