//! Backprop gradients against central finite differences, for every layer type and activation.

use super::*;
use arch::Builder;

// The networks of the derivative checks, shared with the forward-mode checks (jvp.rs).

/// 7 -> 6 -> 5 -> 3, `act` after each hidden layer.
pub(super) fn dense_net(act: Activation, seed: u64) -> Network {
    Builder::new(Shape::flat(7), Init::Xavier, &mut Rng::new(seed))
        .dense(6, true)
        .act(act)
        .dense(5, true)
        .act(act)
        .dense(3, true)
        .build()
}

pub(super) fn conv_relu_maxpool_net(rng: &mut Rng) -> Network {
    Builder::new(Shape::new(2, 7, 7), Init::Torch, rng)
        .conv(3, 3, 1, 1, false, true)
        .act(Activation::Relu)
        .maxpool(2, 2)
        .dense(3, true)
        .build()
}

/// Conv, batch norm (affine and not), average pooling, a reflect-padded conv, dropout.
pub(super) fn conv_batchnorm_net(rng: &mut Rng) -> Network {
    Builder::new(Shape::new(2, 7, 7), Init::Torch, rng)
        .conv(3, 3, 1, 1, false, true)
        .batchnorm(true)
        .act(Activation::Tanh)
        .avgpool(2, 2)
        .conv(4, 2, 1, 0, true, false)
        .act(Activation::Gelu)
        .avgpool(2, 1)
        .dropout(0.3)
        .dense(5, true)
        .batchnorm(false)
        .act(Activation::Sigmoid)
        .dense(3, true)
        .build()
}

/// Triangle with powers 1.4 and 1 on conv maps, sample norm, a channel softmax at temperature t.
pub(super) fn competition_net(rng: &mut Rng, t: f32) -> Network {
    Builder::new(Shape::new(2, 6, 6), Init::Torch, rng)
        .conv(4, 3, 1, 1, true, false)
        .triangle(1.4)
        .avgpool(2, 2)
        .conv(3, 3, 1, 0, false, false)
        .triangle(1.0)
        .samplenorm()
        .dense(6, false)
        .channel_softmax(t)
        .dense(3, true)
        .build()
}

/// Unit-norm input and the norm-preserving |x| activation.
pub(super) fn activation_learning_net(rng: &mut Rng) -> Network {
    Builder::new(Shape::flat(5), Init::Torch, rng)
        .compete(crate::nn::compete::CompeteKind::L2)
        .dense(6, false)
        .compete(crate::nn::compete::CompeteKind::AbsNorm)
        .dense(3, true)
        .build()
}

/// Batch-mean cross-entropy of the network on (x, y), forward in training mode with a fixed
/// dropout stream (so the function being differentiated is deterministic).
fn loss_of(net: &mut Network, ws: &mut Workspace, x: &[f32], y: &[u32]) -> f64 {
    net.prepare(ws, y.len());
    ws.input_mut().copy_from_slice(x);
    net.forward(ws, true, &mut Rng::new(99));
    let k = net.output_len();
    Loss::Ce.eval(ws.output(), y, k, None).0 / y.len() as f64
}

fn analytic(net: &mut Network, ws: &mut Workspace, x: &[f32], y: &[u32]) -> (Vec<Vec<f32>>, Vec<f32>) {
    net.prepare(ws, y.len());
    ws.input_mut().copy_from_slice(x);
    net.forward(ws, true, &mut Rng::new(99));
    let k = net.output_len();
    let out = ws.output().to_vec();
    Loss::Ce.eval(&out, y, k, Some(ws.output_grad_mut()));
    let mut grads = net.zero_grads();
    let l = net.num_layers();
    net.backward(ws, &mut grads, 0, l, None, true);
    let gx = ws.grads[0][..x.len()].to_vec();
    (grads, gx)
}

fn check(mut net: Network, n: usize, seed: u64, h: f32) {
    let what = format!(
        "{:?}",
        net.layers
            .iter()
            .map(|l| match l {
                Layer::Act(a) => a.as_str(),
                _ => "",
            })
            .collect::<Vec<_>>()
    );
    let mut rng = Rng::new(seed);
    let d = net.input_shape().len();
    let k = net.output_len();
    let mut x = vec![0.0; n * d];
    rng.fill_normal(&mut x, 1.0);
    let y: Vec<u32> = (0..n).map(|_| rng.below(k) as u32).collect();
    let mut ws = Workspace::default();
    let (grads, gx) = analytic(&mut net, &mut ws, &x, &y);
    // Central differences at steps h and h/2: where they disagree, a kink (ReLU at 0, a max-pool
    // arg-max switch) lies within the step and the entry is skipped; at most 15% may be (one
    // unit near its kink spoils every entry of its weight row). Smooth
    // networks use h = 1e-2 (truncation error O(h^2) ~ 1e-4, f32 rounding ~1e-7/h ~ 1e-5);
    // networks with kinks use h = 1e-3 so that few entries sit within a step of one.
    let close = |fd: f64, an: f64| (fd - an).abs() <= 1e-3 + 2e-2 * an.abs().max(fd.abs());
    let mut checked = 0usize;
    let mut skipped = 0usize;
    let mut fd_at = |net: &mut Network, set: &mut dyn FnMut(&mut Network, &mut Vec<f32>, f32)| -> Option<f64> {
        let mut d = [0.0f64; 2];
        for (t, h) in [h, h / 2.0].into_iter().enumerate() {
            let mut xp = x.clone();
            set(net, &mut xp, h);
            let lp = loss_of(net, &mut ws, &xp, &y);
            let mut xm = x.clone();
            set(net, &mut xm, -h);
            let lm = loss_of(net, &mut ws, &xm, &y);
            set(net, &mut xm, 0.0);
            d[t] = (lp - lm) / (2.0 * h as f64);
        }
        checked += 1;
        if (d[0] - d[1]).abs() > 1e-3 + 1e-2 * d[1].abs() {
            skipped += 1;
            None
        } else {
            Some(d[1])
        }
    };
    for p in 0..net.params.len() {
        if !net.params[p].trainable() {
            continue;
        }
        // Check a spread of entries of each tensor (all of small ones).
        let len = net.params[p].data.len();
        let step = (len / 40).max(1);
        for j in (0..len).step_by(step) {
            let orig = net.params[p].data[j];
            let mut set = |net: &mut Network, _: &mut Vec<f32>, h: f32| net.params[p].data[j] = orig + h;
            if let Some(fd) = fd_at(&mut net, &mut set) {
                let an = grads[p][j] as f64;
                assert!(
                    close(fd, an),
                    "{what} {} [{j}]: finite difference {fd:.6} vs backprop {an:.6}",
                    net.params[p].name
                );
            }
        }
    }
    for j in (0..x.len()).step_by((x.len() / 40).max(1)) {
        let mut set = |_: &mut Network, xv: &mut Vec<f32>, h: f32| xv[j] += h;
        if let Some(fd) = fd_at(&mut net, &mut set) {
            assert!(close(fd, gx[j] as f64), "{what} input [{j}]: fd {fd:.6} vs {:.6}", gx[j]);
        }
    }
    assert!(skipped * 100 <= 15 * checked, "{what}: {skipped} of {checked} entries sat on a kink");
}

#[test]
fn dense_gradients_every_activation() {
    for (i, act) in Activation::ALL.into_iter().enumerate() {
        let net = dense_net(act, 10 + i as u64);
        let h = if act == Activation::Relu { 1e-3 } else { 1e-2 };
        check(net, 4, 20 + i as u64, h);
    }
}

#[test]
fn conv_relu_maxpool_gradients() {
    check(conv_relu_maxpool_net(&mut Rng::new(3)), 3, 4, 1e-3);
}

#[test]
fn conv_batchnorm_avgpool_dropout_gradients() {
    check(conv_batchnorm_net(&mut Rng::new(3)), 3, 4, 1e-2);
}

#[test]
fn padded_and_whole_input_conv_gradients() {
    // pad 2 with k 5 (LeNet's conv1: edges of every row in padding), then a kernel covering its
    // whole input (run as a dense layer).
    let mut rng = Rng::new(12);
    let net = Builder::new(Shape::new(1, 5, 5), Init::Torch, &mut rng)
        .conv(2, 5, 1, 2, false, true)
        .act(Activation::Tanh)
        .conv(3, 5, 1, 0, false, true)
        .act(Activation::Sigmoid)
        .dense(3, true)
        .build();
    assert!(matches!(&net.layers[2], Layer::Conv { geom, .. } if geom.is_dense()));
    check(net, 3, 13, 1e-2);
}

#[test]
fn strided_reflect_conv_gradients() {
    let mut rng = Rng::new(8);
    let net = Builder::new(Shape::new(1, 6, 6), Init::Kaiming, &mut rng)
        .conv(2, 3, 2, 1, true, true)
        .act(Activation::Softplus)
        .dense(3, true)
        .build();
    check(net, 2, 9, 1e-2);
}

#[test]
fn arch_specs_parse_and_build() {
    let mut rng = Rng::new(1);
    let a: ArchSpec = "mlp:800,800/bn/dropout=0.2".parse().unwrap();
    assert_eq!(a.to_string(), "mlp:800,800/bn/dropout=0.2");
    let net = a.build(Shape::new(1, 28, 28), 10, Activation::Relu, Init::Torch, &mut rng).unwrap();
    assert_eq!(net.output_len(), 10);
    // `/nobias`: the dense layers have weights only (PEPITA's reference networks).
    let a: ArchSpec = "mlp:16/dropout=0.1/nobias".parse().unwrap();
    assert_eq!(a.to_string(), "mlp:16/dropout=0.1/nobias");
    let net = a.build(Shape::new(1, 28, 28), 10, Activation::Relu, Init::Kaiming, &mut rng).unwrap();
    assert_eq!(net.params.len(), 2);
    assert!(net.layers.iter().all(|l| l.bias().is_none()));
    let lenet: ArchSpec = "lenet".parse().unwrap();
    let net = lenet.build(Shape::new(1, 28, 28), 10, Activation::Relu, Init::Torch, &mut rng).unwrap();
    assert_eq!(net.shapes[8], Shape::new(120, 1, 1));
    let net = lenet.build(Shape::new(3, 32, 32), 10, Activation::Relu, Init::Torch, &mut rng).unwrap();
    assert_eq!(net.shapes[8], Shape::new(120, 1, 1));
    let conv3: ArchSpec = "conv3".parse().unwrap();
    let net = conv3.build(Shape::new(3, 32, 32), 10, Activation::Relu, Init::Torch, &mut rng).unwrap();
    assert_eq!(net.shapes[9], Shape::new(400, 2, 2));
    // Narrower conv3s (the laptop cut of the paper's design) keep the layout; the paper's widths
    // keep the name `conv3` (the ids of runs made before widths existed).
    assert_eq!(conv3.to_string(), "conv3");
    assert_eq!("conv3:100,196,400".parse::<ArchSpec>().unwrap().to_string(), "conv3");
    for name in ["conv3:32,64,128", "hebb-conv3:32,64,128"] {
        let a: ArchSpec = name.parse().unwrap();
        assert_eq!(a.to_string(), name);
        let net = a.build(Shape::new(3, 32, 32), 10, Activation::Relu, Init::Torch, &mut rng).unwrap();
        let last = net.shapes[net.shapes.len() - 2];
        assert_eq!(last.c, 128, "{name}: {:?}", net.shapes);
    }
    for bad in ["conv3:1,2", "conv3:1,2,3,4", "conv3:0,1,1", "conv3x", "hebb-conv3:a,b,c"] {
        assert!(bad.parse::<ArchSpec>().is_err(), "{bad}");
    }
    assert!(lenet.build(Shape::new(1, 8, 8), 10, Activation::Relu, Init::Torch, &mut rng).is_err());
    assert!("mlp:12,x".parse::<ArchSpec>().is_err());
    assert!("resnet".parse::<ArchSpec>().is_err());
    // No hidden layer is said so ("linear"); an empty or malformed width list is refused.
    assert_eq!(
        "linear".parse::<ArchSpec>().unwrap(),
        ArchSpec::Mlp { hidden: vec![], batchnorm: false, dropout: 0.0, bias: true }
    );
    assert_eq!("linear".parse::<ArchSpec>().unwrap().to_string(), "linear");
    for bad in [
        "mlp:",
        "mlp",
        "mlp32",
        "mlp:32,,32",
        "mlp:32/bn/bn",
        "softhebb-mlpX",
        "softhebb-cnn:1,x,2,3",
        "al-mlp:",
        "gru:",
        "rnn",
        "gru:0",
    ] {
        assert!(bad.parse::<ArchSpec>().is_err(), "{bad}");
    }
    // A network too large for the memory cap is refused before anything is allocated.
    let e = "mlp:99999999".parse::<ArchSpec>().unwrap().build(
        Shape::flat(784),
        10,
        Activation::Relu,
        Init::Torch,
        &mut rng,
    );
    assert!(e.unwrap_err().contains("more than the cap"));
}

#[test]
fn triangle_and_channel_softmax_gradients() {
    // Triangle with powers 1 and 1.4 (smooth enough for central differences away from the
    // kink), softmax with temperature 5, on conv feature maps and on a flat layer.
    check(competition_net(&mut Rng::new(5), 5.0), 3, 6, 1e-3);
}

#[test]
fn activation_learning_layers_gradients() {
    // Unit-norm input and the norm-preserving |x| activation (kinks at x = 0 only, avoided by
    // random inputs with probability 1).
    check(activation_learning_net(&mut Rng::new(8)), 3, 9, 1e-3);
}

#[test]
fn absnorm_keeps_the_norm() {
    use crate::nn::compete::{CompeteGeom, CompeteKind};
    let g = CompeteGeom { c: 5, p: 1, kind: CompeteKind::AbsNorm };
    let x = [0.3f32, -1.2, 0.5, 2.0, -0.1];
    let mut y = [0.0f32; 5];
    g.forward(&x, 1, &mut y);
    let n = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
    assert!((n(&y) - n(&x)).abs() < 1e-5);
    assert!(y.iter().sum::<f32>().abs() < 1e-5, "zero mean");
}

#[test]
fn hebbian_arch_specs_build_with_the_papers_shapes() {
    let mut rng = Rng::new(1);
    let a: ArchSpec = "softhebb-cnn".parse().unwrap();
    let net = a.build(Shape::new(1, 28, 28), 10, Activation::Relu, Init::Torch, &mut rng).unwrap();
    assert_eq!(net.shapes[net.num_layers() - 2], Shape::new(1536, 3, 3));
    // CIFAR-10: the reference's 24576 = 1536 x 4 x 4 read-out inputs (`demo.py`).
    let net = a.build(Shape::new(3, 32, 32), 10, Activation::Relu, Init::Torch, &mut rng).unwrap();
    assert_eq!(net.shapes[net.num_layers() - 2], Shape::new(1536, 4, 4));
    let stl: ArchSpec = "softhebb-stl".parse().unwrap();
    assert_eq!(stl.to_string().parse::<ArchSpec>().unwrap(), stl);
    let net = stl.build(Shape::new(3, 96, 96), 10, Activation::Relu, Init::Torch, &mut rng).unwrap();
    assert_eq!(net.weight_layers().len(), 5);
    assert_eq!(net.shapes[net.num_layers() - 2], Shape::new(6144, 6, 6));
    let a28: ArchSpec = "softhebb-cnn28".parse().unwrap();
    assert_eq!(a28.to_string(), "softhebb-cnn:32,128,512");
    assert_eq!(a28.to_string().parse::<ArchSpec>().unwrap(), a28);
    let net = a28.build(Shape::new(1, 28, 28), 10, Activation::Relu, Init::Torch, &mut rng).unwrap();
    assert_eq!(net.shapes[net.num_layers() - 2], Shape::new(512, 3, 3));
    let m: ArchSpec = "softhebb-mlp:2000".parse().unwrap();
    assert_eq!(m.to_string(), "softhebb-mlp:2000");
    let mb: ArchSpec = "softhebb-mlp:20/bias".parse().unwrap();
    assert_eq!(mb.to_string().parse::<ArchSpec>().unwrap(), mb);
    let net = mb.build(Shape::new(1, 28, 28), 10, Activation::Relu, Init::Torch, &mut rng).unwrap();
    assert!(net.layers[0].bias().is_some());
    assert!("softhebb-mlp:20/bn".parse::<ArchSpec>().is_err());
    let net = m.build(Shape::new(1, 28, 28), 10, Activation::Relu, Init::Torch, &mut rng).unwrap();
    assert_eq!(net.shapes[1], Shape::flat(2000));
    let al: ArchSpec = "al-mlp:30,20".parse().unwrap();
    assert_eq!(al.to_string(), "al-mlp:30,20");
    let net = al.build(Shape::new(1, 28, 28), 10, Activation::Relu, Init::Torch, &mut rng).unwrap();
    assert_eq!(net.num_layers(), 6);
    // the unit norm is over the whole image, not per pixel
    let Layer::Compete(g) = &net.layers[0] else { panic!() };
    assert_eq!((g.c, g.p), (784, 1));
    // Recurrent: 28 steps of 28 pixels; stacked layers pass their sequences on.
    let g: ArchSpec = "gru:16,8".parse().unwrap();
    assert_eq!(g.to_string(), "gru:16,8");
    assert_eq!("rnn:32".parse::<ArchSpec>().unwrap().to_string(), "rnn:32");
    let net = g.build(Shape::new(1, 28, 28), 10, Activation::Relu, Init::Torch, &mut rng).unwrap();
    assert_eq!(net.shapes[1..], [Shape::new(1, 28, 16), Shape::flat(8), Shape::flat(10)]);
    let Layer::Recurrent { geom, .. } = &net.layers[1] else { panic!() };
    assert_eq!((geom.steps, geom.inp(), geom.gates()), (28, 16, 24));
    let h: ArchSpec = "hebb-conv3".parse().unwrap();
    let net = h.build(Shape::new(3, 32, 32), 10, Activation::Relu, Init::Torch, &mut rng).unwrap();
    assert_eq!(net.shapes[net.num_layers() - 1], Shape::new(400, 2, 2));
    let net = h.build(Shape::new(1, 28, 28), 10, Activation::Relu, Init::Torch, &mut rng).unwrap();
    assert_eq!(net.shapes[net.num_layers() - 1], Shape::new(400, 2, 2));
}

/// A one-block language model (embedding, block, layer norm, a dense map at every position) on
/// next-token targets: backprop's gradient of the mean cross-entropy per token against central
/// finite differences, every parameter tensor.
#[test]
fn transformer_network_gradients() {
    let (vocab, ctx, n) = (5, 4, 3);
    let mut net = Builder::new(Shape::flat(ctx), Init::Torch, &mut Rng::new(4))
        .embed(vocab, 8, 0.02)
        .block(2, 1)
        .layernorm()
        .token_dense(vocab)
        .build();
    // Larger weights than GPT's init, so every path carries a gradient worth checking.
    let mut rng = Rng::new(8);
    for p in net.params.iter_mut() {
        if p.kind == ParamKind::Weight {
            rng.fill_normal(&mut p.data, 0.5);
        }
    }
    let x: Vec<f32> = (0..n * ctx).map(|_| rng.below(vocab) as f32).collect();
    let y: Vec<u32> = (0..n * ctx).map(|_| rng.below(vocab) as u32).collect();
    let mut ws = Workspace::default();
    let loss = |net: &mut Network, ws: &mut Workspace| -> f64 {
        net.prepare(ws, n);
        ws.input_mut().copy_from_slice(&x);
        net.forward(ws, true, &mut Rng::new(0));
        Loss::Ce.eval(ws.output(), &y, vocab, None).0 / y.len() as f64
    };
    net.prepare(&mut ws, n);
    ws.input_mut().copy_from_slice(&x);
    net.forward(&mut ws, true, &mut Rng::new(0));
    let out = ws.output().to_vec();
    Loss::Ce.eval(&out, &y, vocab, Some(ws.output_grad_mut()));
    let mut grads = net.zero_grads();
    let l = net.num_layers();
    net.backward(&mut ws, &mut grads, 0, l, None, false);
    params_against_finite_differences(&mut net, &grads, 5, 1e-3, |net| loss(net, &mut ws));
}

/// Every `stride`-th entry of every parameter: backprop's gradient `grads` against the central
/// difference (step 1e-2) of `loss`, within `abs` + 2% of the larger; returns the entries checked.
fn params_against_finite_differences(
    net: &mut Network,
    grads: &[Vec<f32>],
    stride: usize,
    abs: f64,
    mut loss: impl FnMut(&mut Network) -> f64,
) -> usize {
    let h = 1e-2f32;
    let mut checked = 0;
    for (pi, g) in grads.iter().enumerate() {
        for j in (0..g.len()).step_by(stride) {
            let v = net.params[pi].data[j];
            net.params[pi].data[j] = v + h;
            let lp = loss(net);
            net.params[pi].data[j] = v - h;
            let lm = loss(net);
            net.params[pi].data[j] = v;
            let fd = (lp - lm) / (2.0 * h as f64);
            let an = g[j] as f64;
            assert!(
                (fd - an).abs() <= abs + 2e-2 * an.abs().max(fd.abs()),
                "{}[{j}]: finite difference {fd} vs backprop {an}",
                net.params[pi].name
            );
            checked += 1;
        }
    }
    checked
}

/// A small VAE (`vae:6,2` on 4 inputs, tanh): backprop's gradient of the negative ELBO per pixel
/// (the decoder's Bernoulli cross-entropy against the pixels + the latent's KL divergence, for
/// one fixed draw of the reparameterisation's eps) against central finite differences, every
/// entry of every parameter.
#[test]
fn vae_elbo_gradients() {
    let n = 3;
    for (bad, why) in [("vae:20", "latent size"), ("vae:0,2", "positive")] {
        let e = bad.parse::<super::ArchSpec>().unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
    assert_eq!("vae".parse::<super::ArchSpec>().unwrap().to_string(), "vae:512,20");
    assert_eq!("vae:64,32,4".parse::<super::ArchSpec>().unwrap().to_string(), "vae:64,32,4");
    let mut net: Network = "vae:6,2"
        .parse::<super::ArchSpec>()
        .unwrap()
        .build(Shape::flat(4), 256, Activation::Tanh, Init::Torch, &mut Rng::new(5))
        .unwrap();
    assert!(net.has_latent());
    assert_eq!(net.output_len(), 4);
    let mut rng = Rng::new(6);
    let x: Vec<f32> = (0..n * 4).map(|_| rng.uniform()).collect();
    let y: Vec<u32> = x.iter().map(|v| (v * 255.0).round() as u32).collect();
    let labels = y.len() as f64;
    let mut ws = Workspace::default();
    // The same eps every pass: a fresh stream of the same seed.
    let loss = |net: &mut Network, ws: &mut Workspace| -> f64 {
        net.prepare(ws, n);
        ws.input_mut().copy_from_slice(&x);
        net.forward(ws, true, &mut Rng::new(0));
        (Loss::Bernoulli.eval(ws.output(), &y, 1, None).0 + net.latent_kl(ws)) / labels
    };
    let l0 = loss(&mut net, &mut ws);
    assert!(net.latent_kl(&ws) > 0.0);
    let out = ws.output().to_vec();
    Loss::Bernoulli.eval(&out, &y, 1, Some(ws.output_grad_mut()));
    net.set_kl_weight(&mut ws, 1.0 / labels as f32);
    let mut grads = net.zero_grads();
    let l = net.num_layers();
    net.backward(&mut ws, &mut grads, 0, l, None, false);
    assert!(l0.is_finite());
    let checked = params_against_finite_differences(&mut net, &grads, 1, 2e-4, |net| loss(net, &mut ws));
    assert!(checked > 100);
}

/// `gpt:.../pos=sin`: the positions are Vaswani et al.'s fixed sinusoids (hand-checked entries),
/// a buffer no optimiser touches; the spec round-trips; bad options are refused by name.
#[test]
fn sinusoidal_positions_are_fixed_sinusoids() {
    let spec: super::ArchSpec = "gpt:1,8,2/embed=0.5/pos=sin".parse().unwrap();
    assert_eq!(spec.to_string(), "gpt:1,8,2/embed=0.5/pos=sin");
    assert_eq!("gpt:1,8,2/pos=learned".parse::<super::ArchSpec>().unwrap().to_string(), "gpt:1,8,2");
    let e = "gpt:1,8,2/pos=cos".parse::<super::ArchSpec>().unwrap_err();
    assert!(e.contains("/pos=sin"), "{e}");
    let net = spec.build(Shape::flat(5), 6, Activation::Relu, Init::Torch, &mut Rng::new(1)).unwrap();
    let Layer::Embed { pos, .. } = net.layers[0] else { panic!("an embedding first") };
    let p = &net.params[pos];
    assert!(!p.trainable());
    // Position 3, d = 8: column 0 sin(3), column 1 cos(3), columns 2, 3 at 3 / 10000^(2/8) = 0.3.
    let row = &p.data[3 * 8..4 * 8];
    let want = [3f64.sin(), 3f64.cos(), 0.3f64.sin(), 0.3f64.cos()];
    for (a, b) in row.iter().zip(want) {
        assert!((*a as f64 - b).abs() < 1e-6, "{row:?}");
    }
    assert!(p.data[..8].iter().step_by(2).all(|v| *v == 0.0), "position 0: sin 0");
}

/// Every conv net builds and runs on images of its smallest side (`ArchSpec::min_side`, what
/// the builder checks inputs against): every layer's output is non-empty and the answer finite.
/// (conv3's was 20, where its third pool met a 1x1 input: a panic in backward, not an error.)
#[test]
fn conv_nets_run_on_images_of_their_smallest_side() {
    for spec in ["lenet", "conv3:4,4,4", "hebb-conv3:4,4,4", "softhebb-cnn:4,4,4"] {
        let a: arch::ArchSpec = spec.parse().unwrap();
        let side = a.min_side();
        let input = Shape::new(1, side, side);
        let mut net = a.build(input, 3, Activation::Relu, Init::Torch, &mut Rng::new(1)).unwrap();
        assert!(net.shapes.iter().all(|s| s.len() > 0), "{spec} at {side}px: {:?}", net.shapes);
        let mut ws = Workspace::default();
        net.prepare(&mut ws, 2);
        Rng::new(2).fill_uniform(ws.input_mut(), 0.0, 1.0);
        net.forward(&mut ws, false, &mut Rng::new(3));
        assert!(ws.output().iter().all(|v| v.is_finite()), "{spec} at {side}px");
        assert!(a
            .build(Shape::new(1, side - 1, side - 1), 3, Activation::Relu, Init::Torch, &mut Rng::new(1))
            .is_err());
    }
}
