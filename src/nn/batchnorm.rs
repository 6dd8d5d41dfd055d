//! Batch normalisation (Ioffe & Szegedy 2015) per channel, over the batch and spatial positions.
//!
//! Training: y = gamma (x - mu_B) / sqrt(var_B + eps) + beta with the batch's biased variance;
//! running mean/var updated with momentum 0.1 and the unbiased variance (PyTorch's convention).
//! Evaluation: the running statistics. `affine: false` drops gamma and beta (SoftHebb).
//!
//! # Shapes
//! x, y: N x C x P (P = H W; P = 1 after a dense layer). gamma, beta, running stats: C.

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BnGeom {
    pub c: usize,
    pub p: usize,
    pub eps: f32,
    pub momentum: f32,
}

impl BnGeom {
    /// Training forward. Writes y, the normalised xhat (kept for backward) and 1/std per channel.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_train(
        &self,
        x: &[f32],
        n: usize,
        gamma_beta: Option<(&[f32], &[f32])>,
        running: (&mut [f32], &mut [f32]),
        xhat: &mut [f32],
        inv_std: &mut [f32],
        y: &mut [f32],
    ) {
        let (c, p) = (self.c, self.p);
        let m = (n * p) as f64;
        let (rmean, rvar) = running;
        for ch in 0..c {
            let (mut s, mut s2) = (0.0f64, 0.0f64);
            for smp in 0..n {
                for v in &x[(smp * c + ch) * p..(smp * c + ch + 1) * p] {
                    s += *v as f64;
                    s2 += (*v as f64) * (*v as f64);
                }
            }
            let mean = s / m;
            let var = (s2 / m - mean * mean).max(0.0);
            let is = 1.0 / (var + self.eps as f64).sqrt();
            inv_std[ch] = is as f32;
            let unbiased = if m > 1.0 { var * m / (m - 1.0) } else { var };
            rmean[ch] = (1.0 - self.momentum) * rmean[ch] + self.momentum * mean as f32;
            rvar[ch] = (1.0 - self.momentum) * rvar[ch] + self.momentum * unbiased as f32;
            let (g, b) = gamma_beta.map_or((1.0, 0.0), |(g, b)| (g[ch], b[ch]));
            for smp in 0..n {
                let r = (smp * c + ch) * p..(smp * c + ch + 1) * p;
                for ((xh, yv), xv) in xhat[r.clone()].iter_mut().zip(&mut y[r.clone()]).zip(&x[r]) {
                    *xh = ((*xv as f64 - mean) * is) as f32;
                    *yv = g * *xh + b;
                }
            }
        }
    }

    pub fn forward_eval(
        &self,
        x: &[f32],
        n: usize,
        gamma_beta: Option<(&[f32], &[f32])>,
        running: (&[f32], &[f32]),
        y: &mut [f32],
        mut saved: Option<(&mut [f32], &mut [f32])>,
    ) {
        let (c, p) = (self.c, self.p);
        for ch in 0..c {
            let is = 1.0 / (running.1[ch] + self.eps).sqrt();
            let mu = running.0[ch];
            let (g, b) = gamma_beta.map_or((1.0, 0.0), |(g, b)| (g[ch], b[ch]));
            for smp in 0..n {
                let r = (smp * c + ch) * p..(smp * c + ch + 1) * p;
                for (yv, xv) in y[r.clone()].iter_mut().zip(&x[r.clone()]) {
                    *yv = g * (xv - mu) * is + b;
                }
                if let Some((xhat, _)) = saved.as_mut() {
                    for (h, xv) in xhat[r.clone()].iter_mut().zip(&x[r]) {
                        *h = (xv - mu) * is;
                    }
                }
            }
            if let Some((_, inv_std)) = saved.as_mut() {
                inv_std[ch] = is;
            }
        }
    }

    /// dx = (1/M) inv_std (M dxhat - sum dxhat - xhat sum(dxhat xhat)), dxhat = gamma dy; after
    /// an evaluation-mode forward (`eval`: fixed running statistics) dx = gamma inv_std dy.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        eval: bool,
        g: &[f32],
        n: usize,
        gamma: Option<&[f32]>,
        xhat: &[f32],
        inv_std: &[f32],
        dgamma_dbeta: Option<(&mut [f32], &mut [f32])>,
        dx: Option<&mut [f32]>,
    ) {
        let (c, p) = (self.c, self.p);
        let m = (n * p) as f32;
        let mut sums = vec![(0.0f32, 0.0f32); c];
        for (ch, s) in sums.iter_mut().enumerate() {
            for smp in 0..n {
                let r = (smp * c + ch) * p..(smp * c + ch + 1) * p;
                for (gv, xh) in g[r.clone()].iter().zip(&xhat[r]) {
                    s.0 += gv;
                    s.1 += gv * xh;
                }
            }
        }
        if let Some((dg, db)) = dgamma_dbeta {
            for ch in 0..c {
                dg[ch] = sums[ch].1;
                db[ch] = sums[ch].0;
            }
        }
        if let Some(dx) = dx {
            for ch in 0..c {
                let gm = gamma.map_or(1.0, |g| g[ch]);
                let (sg, sgx) = sums[ch];
                let k = gm * inv_std[ch] / m;
                if eval {
                    for smp in 0..n {
                        let r = (smp * c + ch) * p..(smp * c + ch + 1) * p;
                        for (d, gv) in dx[r.clone()].iter_mut().zip(&g[r]) {
                            *d = gm * inv_std[ch] * gv;
                        }
                    }
                    continue;
                }
                for smp in 0..n {
                    let r = (smp * c + ch) * p..(smp * c + ch + 1) * p;
                    for ((d, gv), xh) in dx[r.clone()].iter_mut().zip(&g[r.clone()]).zip(&xhat[r]) {
                        *d = k * (m * gv - sg - xh * sgx);
                    }
                }
            }
        }
    }
}
