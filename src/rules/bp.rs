//! Backpropagation (Rumelhart, Hinton & Williams 1986): the reference every rule is compared with.
//!
//! delta_L = e = dL/da_L; delta_l = (W_{l+1}^T delta_{l+1}) (.) f'(a_l); dW_l = delta_l h_{l-1}^T
//! (batch-mean loss, so the 1/B is inside e). Through conv, pooling and batch-norm layers the
//! exact chain rule.

use super::{forward_with_error, Rule, Step, StepStats};

pub struct Backprop;

impl Rule for Backprop {
    fn step(&mut self, s: &mut Step) -> StepStats {
        let (net, ws, y, loss, grads, rng) = s.parts();
        let stats = forward_with_error(net, ws, y, loss, rng);
        net.backward(ws, grads, 0, net.num_layers(), None, false);
        stats
    }
}

pub static ENTRY: super::RuleEntry = super::RuleEntry {
    name: "bp",
    summary: "backpropagation: errors flow back through W^T",
    paper: "Rumelhart, Hinton & Williams 1986",
    reported: "Fashion-MNIST 90.8%, MNIST 99.09% (BioTorch LeNet, SGD, 100 epochs, best epoch on the test set: error 9.2 / 0.91)",
    preset: include_str!("../../presets/bp.toml"),
    presets: &[("fashion-mnist-mlp1024x2", include_str!("../../presets/bp/fashion-mnist-mlp1024x2.toml"))],
    settings: super::SettingsKind::of::<super::NoSettings>(),
    build: |_, _, _| Ok(Box::new(Backprop)),
};
