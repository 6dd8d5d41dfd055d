//! Element-wise nonlinearities y = f(a) and their derivatives f'(a).
//!
//! ReLU, tanh, logistic sigmoid, GELU (exact, erf form: a * Phi(a), as PyTorch's default) and
//! softplus log(1 + e^a), and the identity (linear networks: the theory of deep linear nets and
//! prospective configuration's interference experiments). The derivative is computed from the pre-activation `a` and the output
//! `y` (whichever is cheaper), so a layer's backward needs no extra cache.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    Tanh,
    Sigmoid,
    Gelu,
    Softplus,
    /// f(a) = a (a linear network)
    Identity,
}

impl Activation {
    /// Every activation (tests sweep them).
    pub const ALL: [Activation; 6] = [
        Activation::Relu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Gelu,
        Activation::Softplus,
        Activation::Identity,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Gelu => "gelu",
            Activation::Softplus => "softplus",
            Activation::Identity => "identity",
        }
    }

    #[inline]
    pub fn f(&self, a: f32) -> f32 {
        match self {
            Activation::Relu => a.max(0.0),
            Activation::Tanh => a.tanh(),
            Activation::Sigmoid => sigmoid(a),
            Activation::Gelu => 0.5 * a * (1.0 + erf(a * std::f32::consts::FRAC_1_SQRT_2)),
            Activation::Softplus => softplus(a),
            Activation::Identity => a,
        }
    }

    /// f'(a), given a and y = f(a).
    #[inline]
    pub fn df(&self, a: f32, y: f32) -> f32 {
        match self {
            Activation::Relu => {
                if a > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::Tanh => 1.0 - y * y,
            Activation::Sigmoid => y * (1.0 - y),
            Activation::Gelu => {
                let cdf = 0.5 * (1.0 + erf(a * std::f32::consts::FRAC_1_SQRT_2));
                let pdf = (-0.5 * a * a).exp() * 0.398_942_3;
                cdf + a * pdf
            }
            Activation::Softplus => sigmoid(a),
            Activation::Identity => 1.0,
        }
    }
}

impl Activation {
    /// d = g * f'(x) element-wise (y = f(x)): the activation's backward over a slice, with the
    /// activation chosen once outside the loop so that each arm vectorises. The same arithmetic
    /// as `g * df(x, y)` per element.
    pub fn backward_slice(&self, x: &[f32], y: &[f32], g: &[f32], d: &mut [f32]) {
        backward_wide(*self, x, y, g, d)
    }

    /// y = f(x) element-wise over a slice, the activation chosen once outside the loop (the same
    /// arithmetic as `f` per element).
    pub fn forward_slice(&self, x: &[f32], y: &mut [f32]) {
        forward_wide(*self, x, y)
    }
}

crate::wide_fn! {
    fn backward_wide(a: Activation, x: &[f32], y: &[f32], g: &[f32], d: &mut [f32]) {
        let it = d.iter_mut().zip(g).zip(x.iter().zip(y));
        match a {
            Activation::Relu => it.for_each(|((d, g), (x, _))| *d = g * if *x > 0.0 { 1.0 } else { 0.0 }),
            Activation::Tanh => it.for_each(|((d, g), (_, y))| *d = g * (1.0 - y * y)),
            Activation::Sigmoid => it.for_each(|((d, g), (_, y))| *d = g * (y * (1.0 - y))),
            Activation::Identity => it.for_each(|((d, g), _)| *d = g * 1.0),
            a => it.for_each(|((d, g), (x, y))| *d = g * a.df(*x, *y)),
        }
    }
}

crate::wide_fn! {
    fn forward_wide(a: Activation, x: &[f32], y: &mut [f32]) {
        let it = y.iter_mut().zip(x);
        match a {
            Activation::Relu => it.for_each(|(y, x)| *y = x.max(0.0)),
            Activation::Identity => it.for_each(|(y, x)| *y = *x),
            a => it.for_each(|(y, x)| *y = a.f(*x)),
        }
    }
}

#[inline]
pub fn sigmoid(a: f32) -> f32 {
    if a >= 0.0 {
        1.0 / (1.0 + (-a).exp())
    } else {
        let e = a.exp();
        e / (1.0 + e)
    }
}

#[inline]
fn softplus(a: f32) -> f32 {
    // log(1 + e^a) = max(a, 0) + log(1 + e^-|a|), stable for large |a|.
    a.max(0.0) + (-a.abs()).exp().ln_1p()
}

/// erf(x), Abramowitz & Stegun 7.1.26 refined: absolute error below 1.5e-7, enough for f32.
#[inline]
pub fn erf(x: f32) -> f32 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = x.abs() as f64;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t + 0.254_829_592)
            * t
            * (-x * x).exp();
    sign * y as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_finite_differences() {
        let h = 1e-3f32;
        for act in Activation::ALL {
            for &a in &[-2.5f32, -0.7, -0.1, 0.2, 0.9, 3.0] {
                let fd = (act.f(a + h) as f64 - act.f(a - h) as f64) / (2.0 * h as f64);
                let an = act.df(a, act.f(a)) as f64;
                assert!((fd - an).abs() < 2e-3, "{act:?} at {a}: fd {fd} vs {an}");
            }
        }
    }

    #[test]
    fn known_values() {
        assert!((erf(0.5) - 0.520_499_9).abs() < 2e-7);
        assert!((erf(-1.5) + 0.966_105_1).abs() < 2e-7);
        assert!((Activation::Gelu.f(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((Activation::Softplus.f(0.0) - std::f32::consts::LN_2).abs() < 1e-7);
        assert_eq!(Activation::Softplus.f(100.0), 100.0);
        assert_eq!(Activation::Relu.f(-3.0), 0.0);
    }
}
