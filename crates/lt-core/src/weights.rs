//! GLMC's weights and schedule (arXiv:2305.08661): the re-weighted label
//! weights, the class-weighted sampler's per-class probabilities and the
//! cumulative mixing weight α over the epochs.

/// Class weights `v_c = n_c^(−p) / Σ_k n_k^(−p) · C` (re-weighted labels).
pub fn label_weights(counts: &[usize], p: f64) -> Vec<f64> {
    let raw: Vec<f64> = counts.iter().map(|&n| (n.max(1) as f64).powf(-p)).collect();
    let sum: f64 = raw.iter().sum();
    let c = counts.len() as f64;
    raw.iter().map(|r| r / sum * c).collect()
}

/// Per-class sampling probabilities of the class-weighted sampler:
/// each item has weight `n_{y}^(−q)`, so class c is drawn with probability
/// `n_c^(1−q) / Σ_k n_k^(1−q)`.
pub fn class_sampling_probs(counts: &[usize], q: f64) -> Vec<f64> {
    let raw: Vec<f64> = counts.iter().map(|&n| if n == 0 { 0.0 } else { (n as f64).powf(1.0 - q) }).collect();
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|r| r / sum).collect()
}

/// The cumulative learning weight `α = 1 − (e/E)²` for 0-based epoch `e`.
pub fn cumulative_alpha(epoch: usize, epochs: usize) -> f64 {
    if epochs == 0 {
        return 1.0;
    }
    let r = epoch as f64 / epochs as f64;
    1.0 - r * r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_class_count() {
        let w = label_weights(&[5000, 500, 50], 1.2);
        assert!((w.iter().sum::<f64>() - 3.0).abs() < 1e-12);
        assert!(w[0] < w[1] && w[1] < w[2]);
        // p = 0 gives all ones.
        assert_eq!(label_weights(&[10, 20], 0.0), vec![1.0, 1.0]);
    }

    #[test]
    fn sampling_probs() {
        let p = class_sampling_probs(&[400, 100], 1.0);
        assert!((p[0] - 0.5).abs() < 1e-12);
        let p = class_sampling_probs(&[400, 100], 0.0);
        assert!((p[0] - 0.8).abs() < 1e-12);
        let p = class_sampling_probs(&[400, 100], 0.5);
        assert!((p[0] - 20.0 / 30.0).abs() < 1e-12);
    }

    #[test]
    fn alpha_schedule() {
        assert_eq!(cumulative_alpha(0, 200), 1.0);
        assert!((cumulative_alpha(100, 200) - 0.75).abs() < 1e-12);
        assert!((cumulative_alpha(199, 200) - (1.0 - (199.0f64 / 200.0).powi(2))).abs() < 1e-12);
    }
}
