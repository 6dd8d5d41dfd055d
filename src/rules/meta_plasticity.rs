//! Meta-learned plasticity with fixed random feedback (Shervani-Tabar & Rosenbaum, "Meta-learning
//! biologically plausible plasticity rules with random feedback pathways", Nat. Commun. 2023;
//! `NeuralDynamicsAndComputing/MetaLearning-Plasticity`, optim.py's `generic_rule`).
//!
//! Errors travel back through fixed random matrices B (feedback alignment's path):
//!
//!   e_L = softmax(a_L) - y*,   e_l = (B_{l+1}^T e_{l+1}) (.) f'(a_l)
//!
//! and each weight matrix changes by a plasticity rule with a few coefficients theta:
//!
//!   dW_l = - theta_0 e_l h_{l-1}^T                   (pseudo-gradient: FA's update)
//!          - theta_1 e_l e_{l-1}^T                   (error correlation; layers l >= 2)
//!          + theta_2 (h_l h_{l-1}^T - h_l h_l^T W_l) (Oja's rule)
//!
//! (h_0 = x, h_l the layer's output after its activation, h_L = softmax(a_L), as the reference's
//! activation list), batch means over the N samples of a step (online learning: N = 1). The
//! reference's theta_0 starts at 1e-3 and the others at 0, and its outer loop learns theta by
//! differentiating through the episode (Adam 1e-3). Here theta is this rule's setting
//! (`mp_pseudo_grad`, `mp_error_corr`, `mp_oja`), and `biolearn meta-train` learns it with
//! evolution strategies over few-shot online episodes (`protocol::episodes`): three numbers
//! need no reverse-mode pass through hundreds of plastic steps.
//!
//! Where biolearn's networks differ from the reference: the hidden nonlinearity is the
//! network's (the reference's softplus with beta 10, whose f' it writes 1 - exp(-10 h)); biases,
//! which the reference's plastic layers leave out, get the pseudo-gradient term -theta_0 e_l.
//! B_l has W_l's shape, fixed, U(+-1/sqrt(fan_in)) (the reference's `nn.Linear` feedback).
//! The change is the rule's own (applied through `Updater::local`): the optimiser and its
//! learning rate play no part; theta_0 is the step size.
//!
//! # Shapes
//! h_l, e_l: N x n_l; W_l, B_l: n_l x n_{l-1}.

use super::{forward_with_error, mlp_layers, Rule, Step, StepStats, Updater};
use crate::linalg;
use crate::nn::{Activation, Network, ParamKind};
use crate::rng::Rng;

crate::settings! {
    /// Meta-learned plasticity's coefficients (`meta-plasticity`).
    pub struct MetaPlasticitySettings {
        /// theta_0: the pseudo-gradient term's coefficient (the reference's start, 1e-3).
        pub mp_pseudo_grad: f32 = 1e-3,
        /// theta_1: the error-correlation term's coefficient (starts at 0).
        pub mp_error_corr: f32 = 0.0,
        /// theta_2: Oja's term's coefficient (starts at 0).
        pub mp_oja: f32 = 0.0,
    }
    check(s) {
        for (name, v) in [("mp_pseudo_grad", s.mp_pseudo_grad), ("mp_error_corr", s.mp_error_corr), ("mp_oja", s.mp_oja)] {
            if !v.is_finite() || v.abs() > 10.0 {
                return Err(format!("{name} must be a number in [-10, 10] (got {v})"));
            }
        }
        Ok(())
    }
}

pub struct MetaPlasticity {
    s: MetaPlasticitySettings,
    /// Dense layer indices, and the hidden activation after each.
    dense: Vec<usize>,
    acts: Vec<Activation>,
    /// Per dense layer after the first: its fixed B (parameter `feedback.I.weight`).
    pub feedback: Vec<usize>,
    /// Per dense layer: e_l (N x n_l).
    e: Vec<Vec<f32>>,
    /// The change of each dense layer's weight and bias.
    dw: Vec<Vec<f32>>,
    db: Vec<Vec<f32>>,
    /// Scratch: softmax output, h_l W_l (and error correlations), Oja's term.
    soft: Vec<f32>,
    tmp: Vec<f32>,
    oja: Vec<f32>,
}

impl MetaPlasticity {
    pub fn new(net: &mut Network, s: &MetaPlasticitySettings, rng: &mut Rng) -> Result<Self, String> {
        let (dense, acts) = mlp_layers(net, "meta-plasticity")?;
        let mut feedback = Vec::new();
        for &d in &dense[1..] {
            let w = net.layers[d].weight().expect("dense");
            let (shape, len) = (net.params[w].shape.clone(), net.params[w].data.len());
            let bound = 1.0 / (shape[1] as f32).sqrt();
            let mut b = vec![0.0; len];
            rng.fill_uniform(&mut b, -bound, bound);
            feedback.push(net.add_param(format!("feedback.{d}.weight"), shape, b, ParamKind::Feedback));
        }
        let k = dense.len();
        let dw = dense.iter().map(|&d| vec![0.0; net.params[net.layers[d].weight().unwrap()].data.len()]).collect();
        let db = dense.iter().map(|&d| vec![0.0; net.shapes[d + 1].len()]).collect();
        Ok(MetaPlasticity {
            s: s.clone(),
            dense,
            acts,
            feedback,
            e: vec![Vec::new(); k],
            dw,
            db,
            soft: Vec::new(),
            tmp: Vec::new(),
            oja: Vec::new(),
        })
    }

    /// The errors e_l and the changes dW_l, db_l of the batch in `ws` (after the forward pass
    /// and the loss).
    fn changes(&mut self, net: &Network, ws: &crate::nn::Workspace) {
        let (n, l) = (ws.n, net.num_layers());
        let kk = self.dense.len();
        let inv_n = 1.0 / n as f32;
        // e_L per sample: the loss gradient holds it divided by N.
        let k = net.output_len();
        self.e[kk - 1].clear();
        self.e[kk - 1].extend(ws.grads[l][..n * k].iter().map(|v| v * n as f32));
        for j in (0..kk - 1).rev() {
            let (d, next) = (self.dense[j], self.dense[j + 1]);
            let (out, up) = (net.shapes[d + 1].len(), net.shapes[next + 1].len());
            let (lo, hi) = self.e.split_at_mut(j + 1);
            let e = &mut lo[j];
            e.resize(n * out, 0.0);
            // e_l = e_{l+1} B_{l+1} (N x up)(up x out), then (.) f'(a_l).
            linalg::matmul(n, out, up, &hi[0][..n * up], false, &net.params[self.feedback[j]].data, false, e, false);
            let (a, h) = (&ws.acts[d + 1][..n * out], &ws.acts[d + 2][..n * out]);
            let act = self.acts[j];
            for ((ev, av), hv) in e.iter_mut().zip(a).zip(h) {
                *ev *= act.df(*av, *hv);
            }
        }
        // The output layer's h_L is softmax(a_L).
        self.soft.clear();
        self.soft.extend_from_slice(&ws.acts[l][..n * k]);
        crate::nn::loss::softmax_rows(&mut self.soft, k);
        for j in 0..kk {
            let d = self.dense[j];
            let (inp, out) = (net.shapes[d].len(), net.shapes[d + 1].len());
            let h_prev = &ws.acts[d][..n * inp];
            let h: &[f32] = if j + 1 == kk { &self.soft } else { &ws.acts[d + 2][..n * out] };
            let dw = &mut self.dw[j];
            let (t0, t1, t2) = (self.s.mp_pseudo_grad, self.s.mp_error_corr, self.s.mp_oja);
            // -theta_0 e^T h_prev / N (out x inp).
            linalg::matmul(out, inp, n, &self.e[j], true, h_prev, false, dw, false);
            dw.iter_mut().for_each(|v| *v *= -t0 * inv_n);
            if t1 != 0.0 && j > 0 {
                // - theta_1 e_l^T e_{l-1} / N.
                self.tmp.resize(out * inp, 0.0);
                linalg::matmul(out, inp, n, &self.e[j], true, &self.e[j - 1], false, &mut self.tmp, false);
                dw.iter_mut().zip(&self.tmp).for_each(|(v, t)| *v -= t1 * inv_n * t);
            }
            if t2 != 0.0 {
                // + theta_2 (h^T h_prev - h^T (h W)) / N: h W is N x inp.
                let w = &net.params[net.layers[d].weight().expect("dense")].data;
                self.tmp.resize(n * inp, 0.0);
                linalg::matmul(n, inp, out, h, false, w, false, &mut self.tmp, false);
                self.tmp.iter_mut().zip(h_prev).for_each(|(t, hp)| *t = hp - *t);
                self.oja.resize(out * inp, 0.0);
                linalg::matmul(out, inp, n, h, true, &self.tmp[..n * inp], false, &mut self.oja, false);
                dw.iter_mut().zip(&self.oja).for_each(|(v, o)| *v += t2 * inv_n * o);
            }
            let db = &mut self.db[j];
            db.fill(0.0);
            linalg::add_col_sums(&self.e[j], n, out, db);
            db.iter_mut().for_each(|v| *v *= -t0 * inv_n);
        }
    }
}

impl Rule for MetaPlasticity {
    /// The optimiser's convention for tools that read a step's update: minus the change.
    fn step(&mut self, s: &mut Step) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        let stats = forward_with_error(net, ws, y, loss, rng);
        self.changes(net, ws);
        for (j, &d) in self.dense.iter().enumerate() {
            let w = net.layers[d].weight().expect("dense");
            grads[w].iter_mut().zip(&self.dw[j]).for_each(|(g, v)| *g = -v);
            if let Some(b) = net.layers[d].bias() {
                grads[b].iter_mut().zip(&self.db[j]).for_each(|(g, v)| *g = -v);
            }
        }
        stats
    }

    /// The plasticity rule changes the weights itself: W += dW (no optimiser).
    fn train_batch(&mut self, s: &mut Step, upd: &mut Updater) -> StepStats {
        let (net, ws, y, loss, _, rng) = s.parts();
        let stats = forward_with_error(net, ws, y, loss, rng);
        if !stats.loss_sum.is_finite() {
            return stats;
        }
        self.changes(net, ws);
        let (dense, dw, db) = (&self.dense, &self.dw, &self.db);
        upd.local(net, |net| {
            for (j, &d) in dense.iter().enumerate() {
                let w = net.layers[d].weight().expect("dense");
                net.params[w].data.iter_mut().zip(&dw[j]).for_each(|(p, v)| *p += v);
                if let Some(b) = net.layers[d].bias() {
                    net.params[b].data.iter_mut().zip(&db[j]).for_each(|(p, v)| *p += v);
                }
            }
        });
        stats
    }
}

pub static ENTRY: super::RuleEntry = super::RuleEntry {
    name: "meta-plasticity",
    summary: "meta-learned plasticity: errors through fixed random feedback, each weight changed by a rule of three coefficients (pseudo-gradient, error correlation, Oja) that `biolearn meta-train` learns over few-shot online episodes",
    paper: "Shervani-Tabar & Rosenbaum 2023, Nat. Commun. 14:1853",
    reported: "",
    preset: include_str!("../../presets/meta-plasticity.toml"),
    presets: &[],
    settings: super::SettingsKind::of::<MetaPlasticitySettings>(),
    build: |net, cx, rng| {
        let s: MetaPlasticitySettings = cx.settings()?;
        Ok(Box::new(MetaPlasticity::new(net, &s, rng)?))
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Loss, Workspace};
    use crate::optim::{OptimConfig, Optimizer};

    fn one_step(net: &mut Network, r: &mut MetaPlasticity, x: &[f32], y: &[u32]) {
        let (mut ws, mut g, mut rng) = (Workspace::default(), net.zero_grads(), Rng::new(1));
        net.prepare(&mut ws, y.len());
        ws.input_mut().copy_from_slice(x);
        let mut opt = Optimizer::new(OptimConfig::default(), &net.update_sizes());
        let mut upd = Updater { opt: &mut opt, lr: 0.0, masks: None , device: None };
        r.train_batch(&mut Step::new(net, &mut ws, y, Loss::Ce, &mut g, &mut rng), &mut upd);
    }

    /// With theta = (theta_0, 0, 0) and B = W, a step is SGD on the cross-entropy at rate
    /// theta_0 (online BP).
    #[test]
    fn pseudo_gradient_only_with_b_equal_to_w_is_sgd() {
        let mut net = crate::rules::tests::net22(Activation::Tanh);
        let s = MetaPlasticitySettings { mp_pseudo_grad: 0.1, ..Default::default() };
        let mut r = MetaPlasticity::new(&mut net, &s, &mut Rng::new(2)).unwrap();
        net.params[r.feedback[0]].data = net.params[2].data.clone();
        let (x, y) = ([0.3, -0.8, 1.1, 0.4], [1, 0]);
        let g = crate::rules::tests::grads_of(&mut crate::rules::bp::Backprop, &mut net, &x, &y);
        let before: Vec<Vec<f32>> = net.params.iter().map(|p| p.data.clone()).collect();
        one_step(&mut net, &mut r, &x, &y);
        for p in 0..4 {
            for ((a, b), gv) in net.params[p].data.iter().zip(&before[p]).zip(&g[p]) {
                assert!((a - (b - 0.1 * gv)).abs() < 1e-6, "parameter {p}");
            }
        }
    }

    /// The error-correlation term by hand on the 2-2-2 net (theta = (0, 1, 0), B = W_1, one
    /// sample, ReLU): x = (1, 1), a_0 = h_1 = (0.25, 1.75), a_1 = (-0.625, 3.5625), softmax
    /// (0.014957, 0.985043); label 0: e_1 = (-0.985043, 0.985043), e_0 = e_1 B (.) f'(a_0) =
    /// (-0.738782, 2.462607). dW_1 = - e_1^T e_0 = [[-0.727732, 2.425774], [0.727732,
    /// -2.425774]]; the first layer has no error below it and theta_0 = 0: W_0 and both biases
    /// stay.
    #[test]
    fn error_correlation_term_by_hand() {
        let mut net = crate::rules::tests::net22(Activation::Relu);
        let s = MetaPlasticitySettings { mp_pseudo_grad: 0.0, mp_error_corr: 1.0, mp_oja: 0.0 };
        let mut r = MetaPlasticity::new(&mut net, &s, &mut Rng::new(2)).unwrap();
        net.params[r.feedback[0]].data = net.params[2].data.clone();
        let before: Vec<Vec<f32>> = net.params.iter().map(|p| p.data.clone()).collect();
        one_step(&mut net, &mut r, &[1.0, 1.0], &[0]);
        let want = [0.272268, 1.925774, 0.977732, -0.425774];
        for (a, w) in net.params[2].data.iter().zip(&want) {
            assert!((a - w).abs() < 1e-5, "{:?} vs {want:?}", net.params[2].data);
        }
        for p in [0, 1, 3] {
            assert_eq!(net.params[p].data, before[p], "parameter {p}");
        }
    }

    /// Oja's term by hand on the 2-2-2 net (theta = (0, 0, 1), one sample, ReLU):
    /// x = (1, 1): a_0 = (0.25, 1.75) = h_1; dW_0 = h_1 x^T - h_1 h_1^T W_0.
    #[test]
    fn oja_term_by_hand() {
        let mut net = crate::rules::tests::net22(Activation::Relu);
        let s = MetaPlasticitySettings { mp_pseudo_grad: 0.0, mp_error_corr: 0.0, mp_oja: 1.0 };
        let mut r = MetaPlasticity::new(&mut net, &s, &mut Rng::new(2)).unwrap();
        one_step(&mut net, &mut r, &[1.0, 1.0], &[0]);
        // h h^T = [[0.0625, 0.4375], [0.4375, 3.0625]]; (h h^T) W_0 with W_0 = [[0.5, -0.25], [0.75, 1]]:
        //   row 0 = (0.0625 * 0.5 + 0.4375 * 0.75, 0.0625 * -0.25 + 0.4375 * 1) = (0.359375, 0.421875)
        //   row 1 = (0.4375 * 0.5 + 3.0625 * 0.75, 0.4375 * -0.25 + 3.0625 * 1) = (2.515625, 2.953125)
        // h x^T = [[0.25, 0.25], [1.75, 1.75]]; dW_0 = h x^T - that.
        let want = [0.5 + 0.25 - 0.359375, -0.25 + 0.25 - 0.421875, 0.75 + 1.75 - 2.515625, 1.0 + 1.75 - 2.953125];
        for (a, w) in net.params[0].data.iter().zip(&want) {
            assert!((a - w).abs() < 1e-5, "{:?} vs {want:?}", net.params[0].data);
        }
        // Biases get the pseudo-gradient term only: theta_0 = 0 leaves them.
        assert!(net.params[1].data.iter().all(|v| *v == 0.0));
    }
}
