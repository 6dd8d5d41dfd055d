//! Global magnitude pruning (Gupta et al. 2022, `manasgupta-1/GlobalMP`).
//!
//! Pool |w| over every weight tensor (dense and conv; biases and batch-norm parameters are not
//! pruned), take one global threshold at the target sparsity, and zero every weight at or below
//! it. With the minimum-threshold option `min_keep` (GlobalMP's `mt`, default 0.05%), every layer
//! keeps at least ceil(min_keep * N_layer) of its largest weights, so no layer is cut off.
//!
//! Masks are 0/1 tensors shaped like the weights; the driver multiplies them into the weights
//! after every optimiser step, so they hold whatever rule produced the update (fine-tuning under
//! the mask, gradual pruning).
//!
//! Gradual pruning follows Zhu & Gupta 2017: sparsity s_t = s_f (1 - (1 - t/T)^3) at the end of
//! epoch t of T.

use crate::nn::{Network, ParamKind};

/// Per parameter index: Some(mask) for pruned weight tensors, None elsewhere.
pub type Masks = Vec<Option<Vec<f32>>>;

/// Masks that remove the `sparsity` share of all weights with the smallest magnitude.
pub fn global_magnitude_masks(net: &Network, sparsity: f64, min_keep: f64) -> Masks {
    let weights: Vec<usize> = (0..net.params.len()).filter(|&i| net.params[i].kind == ParamKind::Weight).collect();
    let mut all: Vec<f32> = weights.iter().flat_map(|&i| net.params[i].data.iter().map(|v| v.abs())).collect();
    let total = all.len();
    let k = ((sparsity.clamp(0.0, 1.0) * total as f64).round() as usize).min(total);
    let mut masks: Masks = vec![None; net.params.len()];
    if k == 0 {
        for &i in &weights {
            masks[i] = Some(vec![1.0; net.params[i].data.len()]);
        }
        return masks;
    }
    // The k-th smallest magnitude is the threshold: weights with |w| <= it are pruned, ties
    // broken by keeping the first ones until exactly k are pruned.
    let (_, thr, _) = all.select_nth_unstable_by(k - 1, |a, b| a.total_cmp(b));
    let thr = *thr;
    let below: usize = weights.iter().map(|&i| net.params[i].data.iter().filter(|v| v.abs() < thr).count()).sum();
    let mut ties_to_prune = k - below;
    for &i in &weights {
        let w = &net.params[i].data;
        let mut m = vec![1.0f32; w.len()];
        for (mv, v) in m.iter_mut().zip(w) {
            let a = v.abs();
            if a < thr || (a == thr && ties_to_prune > 0) {
                if a == thr {
                    ties_to_prune -= 1;
                }
                *mv = 0.0;
            }
        }
        // Minimum threshold: keep the layer's largest ceil(min_keep * n) weights.
        let min_n = (min_keep * w.len() as f64).ceil() as usize;
        let kept = m.iter().filter(|&&v| v > 0.0).count();
        if kept < min_n {
            let mut order: Vec<usize> = (0..w.len()).collect();
            order.sort_by(|&a, &b| w[b].abs().total_cmp(&w[a].abs()));
            for &j in &order[..min_n] {
                m[j] = 1.0;
            }
        }
        masks[i] = Some(m);
    }
    masks
}

/// Multiply the masks into the network's weights.
pub fn apply(net: &mut Network, masks: &Masks) {
    for (p, m) in net.params.iter_mut().zip(masks) {
        if let Some(m) = m {
            for (w, mv) in p.data.iter_mut().zip(m) {
                *w *= mv;
            }
        }
    }
}

/// Share of weights (weight tensors only) that are exactly zero.
pub fn sparsity(net: &Network) -> f64 {
    let (mut z, mut n) = (0usize, 0usize);
    for p in net.params.iter().filter(|p| p.kind == ParamKind::Weight) {
        z += p.data.iter().filter(|v| **v == 0.0).count();
        n += p.data.len();
    }
    z as f64 / n.max(1) as f64
}

/// Zhu & Gupta's cubic schedule: sparsity after epoch `t` (1-based) of `total`.
pub fn gradual_sparsity(final_sparsity: f64, t: usize, total: usize) -> f64 {
    let f = (t as f64 / total.max(1) as f64).min(1.0);
    final_sparsity * (1.0 - (1.0 - f).powi(3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::Builder;
    use crate::nn::{Init, Shape};
    use crate::rng::Rng;

    fn net() -> Network {
        // Two weight layers: 3x2 (6 weights) and 2x3 (6 weights), set by hand.
        let mut n = Builder::new(Shape::flat(2), Init::Torch, &mut Rng::new(0)).dense(3, true).dense(2, true).build();
        n.params[0].data = vec![0.1, -0.9, 0.3, 0.05, -0.6, 0.7];
        n.params[2].data = vec![0.2, -0.01, 0.02, 0.4, -0.03, 0.8];
        n
    }

    #[test]
    fn one_global_threshold_across_layers() {
        let mut n = net();
        // 50% of 12: the six smallest magnitudes are 0.01 0.02 0.03 0.05 0.1 0.2.
        let m = global_magnitude_masks(&n, 0.5, 0.0);
        assert_eq!(m[0].as_ref().unwrap(), &vec![0.0, 1.0, 1.0, 0.0, 1.0, 1.0]);
        assert_eq!(m[2].as_ref().unwrap(), &vec![0.0, 0.0, 0.0, 1.0, 0.0, 1.0]);
        assert!(m[1].is_none() && m[3].is_none(), "biases are not pruned");
        apply(&mut n, &m);
        assert_eq!(sparsity(&n), 0.5);
        assert_eq!(n.params[0].data, vec![0.0, -0.9, 0.3, 0.0, -0.6, 0.7]);
    }

    #[test]
    fn minimum_threshold_keeps_each_layers_largest() {
        let n = net();
        // 11 of 12 pruned globally would leave layer 2 empty (0.9 is the largest, in layer 0);
        // min_keep 0.3 keeps ceil(1.8) = 2 per layer.
        let m = global_magnitude_masks(&n, 11.0 / 12.0, 0.3);
        assert_eq!(m[0].as_ref().unwrap(), &vec![0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(m[2].as_ref().unwrap(), &vec![0.0, 0.0, 0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn exact_count_with_ties_and_cubic_schedule() {
        let mut n = net();
        n.params[0].data = vec![0.5; 6];
        n.params[2].data = vec![0.5; 6];
        let m = global_magnitude_masks(&n, 0.25, 0.0);
        let pruned: usize = m.iter().flatten().map(|v| v.iter().filter(|x| **x == 0.0).count()).sum();
        assert_eq!(pruned, 3);
        assert_eq!(gradual_sparsity(0.9, 0, 10), 0.0);
        assert!((gradual_sparsity(0.9, 5, 10) - 0.9 * 0.875).abs() < 1e-12);
        assert_eq!(gradual_sparsity(0.9, 10, 10), 0.9);
    }
}
