//! Forward-mode differentiation: Jacobian-vector products through every layer type.
//!
//! After a forward pass has filled a `Workspace` (the primal: activations, im2col columns,
//! max-pool arg-maxes, batch-norm statistics, dropout masks), `Network::jvp_layers` carries a
//! tangent v_lo at `acts[lo]` to the tangent at `acts[hi]`:
//!
//!   v_{i+1} = J_i(x_i) v_i,   J_i = d acts[i+1] / d acts[i] at the forward pass's point,
//!
//! the directional derivative of the layers' output along v_lo (the dual part of a dual-number
//! forward pass). A rule may change the tangent between layers (directional DFA adds a random
//! direction at every block's output), running the product block by block. Parameters carry no
//! tangent here: the weights are held fixed, as in the rules that use it.
//!
//! Per layer (W, b of a dense or conv layer; bias has no tangent):
//!   dense / conv        v' = conv_or_dense(v; W)               (the forward's product, no bias)
//!   max pool            v'[o] = v[argmax(o)]                   (the forward's arg-max)
//!   avg pool            v' = avgpool(v)
//!   activation          v' = f'(x) (.) v
//!   dropout             v' = mask (.) v                        (the forward's mask)
//!   batch norm, train   v' = gamma inv_std (v - mean v - xhat mean(v xhat))   (per channel over
//!                       the batch and positions: the batch statistics move with v)
//!   batch norm, eval    v' = gamma inv_std v
//!   sample norm         v' = (v - mean v - y' mean(v y')) / s   (per sample)
//!   competition         `CompeteGeom::jvp`
//!   recurrent           `RnnGeom::jvp`: the tangent of every state, step by step
//!
//! Batch norm's, sample norm's, the channel softmax's and l2's Jacobians are symmetric, so their
//! products are their backward formulas applied to v. Like `Network::backward`, the product
//! follows a training-mode pass (dropout applies the pass's masks); after an evaluation pass
//! batch norm uses the running statistics it normalised with.
//!
//! # Shapes
//! Tangents are laid out as the activations: `t[i]` is N x shapes[i] (sample-major).

use super::{Aux, Layer, Network, Workspace};
use crate::linalg;

/// Tangent buffers of one batch size (one per activation), and the conv layers' scratch (kept
/// apart from the forward's im2col columns, which the backward pass still needs).
#[derive(Debug, Default)]
pub struct Tangents {
    pub n: usize,
    /// t[i]: the tangent of `acts[i]`.
    pub t: Vec<Vec<f32>>,
    cols: Vec<f32>,
    tmp: Vec<f32>,
}

impl Network {
    /// Size the tangent buffers for a batch of `n` (no allocation when they already fit).
    pub fn prepare_tangents(&self, tg: &mut Tangents, n: usize) {
        let l = self.layers.len();
        tg.t.resize_with(l + 1, Vec::new);
        tg.n = n;
        for i in 0..=l {
            tg.t[i].resize(n * self.shapes[i].len(), 0.0);
        }
        let (mut cols, mut tmp) = (0, 0);
        for layer in &self.layers {
            match layer {
                Layer::Conv { geom, .. } if !geom.is_dense() => {
                    cols = cols.max(n * geom.p() * geom.ckk());
                    tmp = tmp.max(n * geom.p() * geom.o);
                }
                Layer::Recurrent { geom, .. } => {
                    let (a, b) = geom.jvp_scratch(n);
                    cols = cols.max(a);
                    tmp = tmp.max(b);
                }
                _ => {}
            }
        }
        tg.cols.resize(cols, 0.0);
        tg.tmp.resize(tmp, 0.0);
    }

    /// Carry the tangent `tg.t[lo]` through layers `lo..hi` into `tg.t[lo + 1..=hi]`, at the
    /// point of the last forward pass over `ws` (which must have run those layers on a batch of
    /// `tg.n`).
    pub fn jvp_layers(&self, ws: &Workspace, tg: &mut Tangents, lo: usize, hi: usize) {
        let n = tg.n;
        assert_eq!(ws.n, n, "tangents sized for {} samples, workspace for {}", n, ws.n);
        for i in lo..hi {
            let (tlo, thi) = tg.t.split_at_mut(i + 1);
            let v = &tlo[i][..n * self.shapes[i].len()];
            let dy = &mut thi[0][..n * self.shapes[i + 1].len()];
            let x = &ws.acts[i][..n * self.shapes[i].len()];
            let y = &ws.acts[i + 1][..n * self.shapes[i + 1].len()];
            let p = &self.params;
            match &self.layers[i] {
                Layer::Dense { w, inp, out, .. } => super::dense_forward(v, n, *inp, *out, &p[*w].data, None, dy),
                Layer::Conv { w, geom, .. } if geom.is_dense() => {
                    super::dense_forward(v, n, geom.ckk(), geom.o, &p[*w].data, None, dy)
                }
                Layer::Conv { w, geom, .. } => geom.forward(v, n, &p[*w].data, None, &mut tg.cols, &mut tg.tmp, dy),
                Layer::MaxPool(g) => {
                    let Aux::MaxPool { arg } = &ws.aux[i] else { unreachable!() };
                    let (ol, il) = (g.out_len(), g.in_len());
                    linalg::par_rows(dy, ol, |s, d| {
                        for (dv, &a) in d.iter_mut().zip(&arg[s * ol..(s + 1) * ol]) {
                            *dv = v[s * il + a as usize];
                        }
                    });
                }
                Layer::AvgPool(g) => g.avg_forward(v, n, dy),
                Layer::Recurrent { wx, wh, geom, .. } => {
                    let Aux::Rnn(a) = &ws.aux[i] else { unreachable!() };
                    geom.jvp(v, n, &p[*wx].data, &p[*wh].data, a, &mut tg.cols, &mut tg.tmp, dy);
                }
                Layer::Act(a) => {
                    let a = *a;
                    linalg::par_zip(dy, v, |off, d, vs| {
                        a.backward_slice(&x[off..off + d.len()], &y[off..off + d.len()], vs, d);
                    });
                }
                Layer::Compete(g) => g.jvp(x, y, v, n, dy),
                Layer::SampleNorm => super::samplenorm::backward(x, v, n, x.len() / n.max(1), dy),
                Layer::TokenDense { w, inp, out, .. } => {
                    super::dense_forward(v, v.len() / inp, *inp, *out, &p[*w].data, None, dy)
                }
                // Token ids carry no tangent.
                Layer::Embed { .. } => dy.fill(0.0),
                Layer::LayerNorm { g, d, .. } => {
                    // v' = g (.) (v - mean v - xhat mean(v xhat)) / std, per row.
                    let Aux::Ln { xhat, rstd } = &ws.aux[i] else { unreachable!() };
                    let gm = &p[*g].data;
                    for (r, (dr, vr)) in dy.chunks_exact_mut(*d).zip(v.chunks_exact(*d)).enumerate() {
                        let hr = &xhat[r * d..(r + 1) * d];
                        let m1 = vr.iter().sum::<f32>() / *d as f32;
                        let m2 = vr.iter().zip(hr).map(|(a, b)| a * b).sum::<f32>() / *d as f32;
                        for j in 0..*d {
                            dr[j] = gm[j] * rstd[r] * (vr[j] - m1 - hr[j] * m2);
                        }
                    }
                }
                // The rules that use forward mode refuse transformer networks when they are built
                // (`rules::check_network`).
                Layer::Latent { z } => {
                    // dz = dmu + exp(lv / 2) eps dlv / 2 (the sample's eps held fixed).
                    let super::Aux::Latent(a) = &ws.aux[i] else { unreachable!() };
                    let z = *z;
                    for s in 0..n {
                        let (xs, vs) = (&x[s * 2 * z..(s + 1) * 2 * z], &v[s * 2 * z..(s + 1) * 2 * z]);
                        for j in 0..z {
                            let sd = (0.5 * xs[z + j]).exp();
                            dy[s * z + j] = vs[j] + 0.5 * sd * a.eps[s * z + j] * vs[z + j];
                        }
                    }
                }
                Layer::Block { .. } => unreachable!("no forward-mode product through a transformer block"),
                Layer::Dropout(pr) => match &ws.aux[i] {
                    Aux::Dropout { mask, on: true } if *pr > 0.0 => {
                        dy.iter_mut().zip(v).zip(mask.iter()).for_each(|((d, vv), m)| *d = vv * m)
                    }
                    _ => dy.copy_from_slice(v),
                },
                Layer::BatchNorm { affine, geom, .. } => {
                    let Aux::Bn { xhat, inv_std, eval } = &ws.aux[i] else { unreachable!() };
                    let gamma = affine.map(|(g, _)| p[g].data.as_slice());
                    geom.backward(*eval, v, n, gamma, xhat, inv_std, None, Some(dy));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::Builder;
    use crate::nn::tests as nets;
    use crate::nn::{Activation, Init, Shape};
    use crate::rng::Rng;

    /// The network's output after a training-mode forward pass with a fixed dropout stream.
    fn out_at(net: &mut Network, ws: &mut Workspace, x: &[f32], n: usize) -> Vec<f32> {
        net.prepare(ws, n);
        ws.input_mut().copy_from_slice(x);
        net.forward(ws, true, &mut Rng::new(99));
        ws.output().to_vec()
    }

    /// J v from `jvp_layers` against central differences (f(x + h v) - f(x - h v)) / 2h at
    /// steps h and h/2, output by output; where the two steps disagree a kink (ReLU at 0, an
    /// arg-max switch) lies within the step and the output is skipped (at most 15%).
    fn check(mut net: Network, n: usize, seed: u64, h: f32) {
        let mut rng = Rng::new(seed);
        let d = net.input_shape().len();
        let mut x = vec![0.0; n * d];
        rng.fill_normal(&mut x, 1.0);
        let mut v = vec![0.0; n * d];
        rng.fill_normal(&mut v, 1.0);
        let mut ws = Workspace::default();
        out_at(&mut net, &mut ws, &x, n);
        let mut tg = Tangents::default();
        net.prepare_tangents(&mut tg, n);
        tg.t[0].copy_from_slice(&v);
        let l = net.num_layers();
        net.jvp_layers(&ws, &mut tg, 0, l);
        let jv = tg.t[l].clone();
        let mut fd = [Vec::new(), Vec::new()];
        for (t, h) in [h, h / 2.0].into_iter().enumerate() {
            let shifted = |s: f32| x.iter().zip(&v).map(|(a, b)| a + s * b).collect::<Vec<f32>>();
            let p = out_at(&mut net, &mut ws, &shifted(h), n);
            let m = out_at(&mut net, &mut ws, &shifted(-h), n);
            fd[t] = p.iter().zip(&m).map(|(a, b)| (*a as f64 - *b as f64) / (2.0 * h as f64)).collect();
        }
        let mut skipped = 0;
        for j in 0..jv.len() {
            let (a, b) = (fd[0][j], fd[1][j]);
            if (a - b).abs() > 1e-3 + 1e-2 * b.abs() {
                skipped += 1;
                continue;
            }
            let an = jv[j] as f64;
            assert!((b - an).abs() <= 1e-3 + 2e-2 * an.abs().max(b.abs()), "output {j}: fd {b:.6} vs jvp {an:.6}");
        }
        assert!(skipped * 100 <= 15 * jv.len(), "{skipped} of {} outputs sat on a kink", jv.len());
        assert!(jv.iter().any(|t| t.abs() > 1e-3), "a zero tangent proves nothing");
    }

    #[test]
    fn dense_every_activation() {
        for (i, act) in Activation::ALL.into_iter().enumerate() {
            let h = if act == Activation::Relu { 1e-3 } else { 1e-2 };
            check(nets::dense_net(act, 30 + i as u64), 4, 40 + i as u64, h);
        }
    }

    #[test]
    fn conv_maxpool_batchnorm_avgpool_dropout() {
        let mut rng = Rng::new(3);
        check(nets::conv_relu_maxpool_net(&mut rng), 3, 4, 1e-3);
        check(nets::conv_batchnorm_net(&mut rng), 3, 5, 1e-2);
        // Strided, padded, reflect-padded and whole-input (dense) convolutions.
        let net = Builder::new(Shape::new(1, 6, 6), Init::Kaiming, &mut rng)
            .conv(2, 3, 2, 1, true, true)
            .act(Activation::Softplus)
            .conv(3, 3, 1, 0, false, true)
            .act(Activation::Tanh)
            .dense(3, true)
            .build();
        assert!(matches!(&net.layers[2], Layer::Conv { geom, .. } if geom.is_dense()));
        check(net, 3, 6, 1e-2);
    }

    #[test]
    fn competition_and_sample_norm() {
        // (Temperature 1: at 5 the softmax saturates and its tangents vanish.)
        let mut rng = Rng::new(5);
        check(nets::competition_net(&mut rng, 1.0), 3, 6, 1e-3);
        check(nets::activation_learning_net(&mut rng), 3, 9, 1e-3);
    }

    /// Stacked recurrent layers (a sequence output read by a second layer), Elman and GRU, on
    /// two-channel inputs.
    #[test]
    fn recurrent_layers() {
        use crate::nn::recurrent::Cell;
        let mut rng = Rng::new(11);
        for cell in [Cell::Elman, Cell::Gru] {
            let net = Builder::new(Shape::new(2, 4, 3), Init::Torch, &mut rng)
                .recurrent(cell, 5, true)
                .recurrent(cell, 4, false)
                .dense(3, true)
                .build();
            check(net, 3, 12, 1e-2);
        }
    }

    /// A tangent started part-way (at a block's output) equals the full product's restriction:
    /// J_{lo..hi} v computed in two pieces is the same numbers as in one.
    #[test]
    fn pieces_compose() {
        let mut rng = Rng::new(7);
        let mut net = Builder::new(Shape::flat(6), Init::Xavier, &mut rng)
            .dense(5, true)
            .act(Activation::Tanh)
            .dense(4, true)
            .act(Activation::Tanh)
            .dense(3, true)
            .build();
        let mut x = vec![0.0; 2 * 6];
        rng.fill_normal(&mut x, 1.0);
        let mut ws = Workspace::default();
        out_at(&mut net, &mut ws, &x, 2);
        let mut tg = Tangents::default();
        net.prepare_tangents(&mut tg, 2);
        rng.fill_normal(&mut tg.t[2], 1.0);
        net.jvp_layers(&ws, &mut tg, 2, 5);
        let whole = tg.t[5].clone();
        net.jvp_layers(&ws, &mut tg, 2, 3);
        net.jvp_layers(&ws, &mut tg, 3, 5);
        assert_eq!(whole, tg.t[5]);
    }
}
