//! The encoder's CPU kernels, as candle custom ops over packed tokens: a dense layer
//! with its bias (and GELU) fused, attention over each title's own tokens, and the
//! residual add fused into layer normalisation.
//!
//! Why not candle's built-in ops: each of those allocates a tensor per step and
//! spreads elementwise work over candle's own thread pool while the embedder already
//! runs one batch per core, so at these sizes (tens of tokens × 384) the overhead
//! rivalled the arithmetic; its GELU calls a scalar `erff` 14 million times per
//! batch; and its attention works on padded batches. These kernels run on the calling
//! thread only (the embedder parallelises over batches) and never touch padding.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, bail};

use crate::categorize::model::softmax;
use crate::matmul::matmul;

/// The contiguous f32 data behind a tensor.
fn data<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let all = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&all[start..end]),
        None => bail!("{what}: expected a contiguous tensor"),
    }
}

/// `x · w + b`, then GELU if `gelu`: `x` is (tokens, in), `w` (in, out) — the
/// transpose of PyTorch's layout, made once at load — and `b` (out).
pub struct Dense {
    pub gelu: bool,
}

impl CustomOp3 for Dense {
    fn name(&self) -> &'static str {
        "dense"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (tokens, inputs) = xl.shape().dims2()?;
        let (w_in, outputs) = wl.shape().dims2()?;
        if w_in != inputs || bl.shape().dims1()? != outputs {
            bail!(
                "dense: x {:?}, w {:?}, b {:?} do not fit",
                xl.shape(),
                wl.shape(),
                bl.shape()
            );
        }
        let (x, w, b) = (data(xs, xl, "x")?, data(ws, wl, "w")?, data(bs, bl, "b")?);
        // The bias is the starting value the product accumulates onto.
        let mut out = Vec::with_capacity(tokens * outputs);
        for _ in 0..tokens {
            out.extend_from_slice(b);
        }
        matmul(
            (tokens, outputs, inputs),
            &mut out,
            outputs,
            true,
            x,
            inputs,
            w,
            (outputs, 1),
            1.0,
        );
        if self.gelu {
            gelu(&mut out);
        }
        Ok((CpuStorage::F32(out), Shape::from((tokens, outputs))))
    }
}

/// Multi-head self-attention over packed tokens: `qkv` is (tokens, 3 × hidden) — each
/// token's query, key and value side by side — and `spans` says which rows form one
/// title (start, length). A token attends only to the tokens of its own title, which
/// is what BERT's padding mask achieves on a padded batch.
pub struct Attention<'a> {
    pub heads: usize,
    pub spans: &'a [(usize, usize)],
}

impl CustomOp1 for Attention<'_> {
    fn name(&self) -> &'static str {
        "attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (tokens, width) = layout.shape().dims2()?;
        let hidden = width / 3;
        if self.heads == 0 || !width.is_multiple_of(3) || !hidden.is_multiple_of(self.heads) {
            bail!("attention: width {width} is not 3 × heads × head size");
        }
        if let Some(&(start, len)) = self.spans.iter().find(|(s, l)| s + l > tokens) {
            bail!("attention: span {start}+{len} past {tokens} tokens");
        }
        let qkv = data(storage, layout, "qkv")?;
        let d = hidden / self.heads;
        let scale = 1.0 / (d as f32).sqrt();
        let mut out = vec![0.0f32; tokens * hidden];
        let mut scores = Vec::new();
        for &(start, n) in self.spans {
            if n == 0 {
                continue;
            }
            scores.resize(n * n, 0.0);
            let rows = &qkv[start * width..(start + n) * width];
            let ctx = &mut out[start * hidden..(start + n) * hidden];
            for h in 0..self.heads {
                let (q, k, v) = (
                    &rows[h * d..],
                    &rows[hidden + h * d..],
                    &rows[2 * hidden + h * d..],
                );
                // scores = q · kᵀ / √d: kᵀ is k read with its strides swapped.
                matmul(
                    (n, n, d),
                    &mut scores,
                    n,
                    false,
                    q,
                    width,
                    k,
                    (1, width),
                    scale,
                );
                for row in scores.chunks_exact_mut(n) {
                    softmax(row, 1.0);
                }
                matmul(
                    (n, d, n),
                    &mut ctx[h * d..],
                    hidden,
                    false,
                    &scores,
                    n,
                    v,
                    (width, 1),
                    1.0,
                );
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((tokens, hidden))))
    }
}

/// `LayerNorm(x + residual)` per row, with `norm` = [γ; β] as one (2, hidden) tensor.
pub struct AddNorm {
    pub eps: f32,
}

impl CustomOp3 for AddNorm {
    fn name(&self) -> &'static str {
        "add-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        rs: &CpuStorage,
        rl: &Layout,
        ns: &CpuStorage,
        nl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (tokens, hidden) = xl.shape().dims2()?;
        if rl.shape().dims2()? != (tokens, hidden) || nl.shape().dims2()? != (2, hidden) {
            bail!(
                "add-norm: x {:?}, residual {:?}, norm {:?} do not fit",
                xl.shape(),
                rl.shape(),
                nl.shape()
            );
        }
        let (x, r, norm) = (
            data(xs, xl, "x")?,
            data(rs, rl, "residual")?,
            data(ns, nl, "norm")?,
        );
        let (gamma, beta) = norm.split_at(hidden);
        let mut out: Vec<f32> = x.iter().zip(r).map(|(a, b)| a + b).collect();
        for row in out.chunks_exact_mut(hidden) {
            let mean = row.iter().sum::<f32>() / hidden as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / hidden as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                *v = (*v - mean) * inv * g + b;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((tokens, hidden))))
    }
}

/// The exact (erf) GELU, in place, vectorised for the widest SIMD the CPU has.
pub fn gelu(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            return unsafe { gelu_avx512(x) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            return unsafe { gelu_avx2(x) };
        }
    }
    gelu_portable(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn gelu_avx512(x: &mut [f32]) {
    gelu_portable(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gelu_avx2(x: &mut [f32]) {
    gelu_portable(x)
}

/// Inlined into the `target_feature` copies above, so each is compiled for its
/// instruction set from this one body.
#[inline(always)]
fn gelu_portable(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// erf for f32 as a rational function (Eigen's and XLA's `erf` for floats): no
/// branches and no `exp`, so a loop of it vectorises (plain `*` and `+`: `mul_add`
/// would be a library call on CPUs without FMA); within 1e-6 of `libm`'s `erff`
/// (tested). Outside [-4, 4] erf is ±1 in f32. The coefficients are the published
/// ones, verbatim.
#[inline(always)]
#[allow(clippy::excessive_precision)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.72614225801306e-10 * x2 + 2.77068142495902e-08;
    p = p * x2 - 2.10102402082508e-06;
    p = p * x2 - 5.69250639462346e-05;
    p = p * x2 - 7.34990630326855e-04;
    p = p * x2 - 2.95459980854025e-03;
    p = p * x2 - 1.60960333262415e-02;
    let mut q = -1.45660718464996e-05 * x2 - 2.13374055278905e-04;
    q = q * x2 - 1.68282697438203e-03;
    q = q * x2 - 7.37332916720468e-03;
    q = q * x2 - 1.42647390514189e-02;
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn erf_agrees_with_libm() {
        let mut worst = 0.0f32;
        for i in -6000..=6000 {
            let x = i as f32 / 1000.0;
            worst = worst.max((erf(x) - libm::erff(x)).abs());
        }
        assert!(worst < 1e-6, "max |erf - erff| = {worst}");
        let mut g = vec![-3.0, -1.0, 0.0, 1.0, 3.0];
        gelu(&mut g);
        let want = [-0.004_049_7, -0.158_655_3, 0.0, 0.841_344_7, 2.995_950_3];
        for (a, b) in g.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn dense_attention_and_norm_match_plain_formulas() {
        let dev = &Device::Cpu;
        // Two titles (3 tokens and 2), hidden 4, two heads of 2.
        let (tokens, hidden) = (5, 4);
        let vals = |n: usize, seed: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32 + seed) * 0.37).sin()).collect()
        };
        let x = Tensor::from_vec(vals(tokens * hidden, 1.0), (tokens, hidden), dev).unwrap();
        let w =
            Tensor::from_vec(vals(hidden * 3 * hidden, 2.0), (hidden, 3 * hidden), dev).unwrap();
        let b = Tensor::from_vec(vals(3 * hidden, 3.0), 3 * hidden, dev).unwrap();
        let qkv = x.apply_op3_no_bwd(&w, &b, &Dense { gelu: false }).unwrap();
        let want = x.matmul(&w).unwrap().broadcast_add(&b).unwrap();
        let diff = (qkv.clone() - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);

        let spans = [(0, 3), (3, 2)];
        let ctx = qkv
            .apply_op1_no_bwd(&Attention {
                heads: 2,
                spans: &spans,
            })
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let m = qkv.to_vec2::<f32>().unwrap();
        for &(start, n) in &spans {
            for h in 0..2 {
                for i in start..start + n {
                    let s: Vec<f32> = (start..start + n)
                        .map(|j| {
                            (0..2)
                                .map(|a| m[i][h * 2 + a] * m[j][4 + h * 2 + a])
                                .sum::<f32>()
                                / 2f32.sqrt()
                        })
                        .collect();
                    let z: f32 = s.iter().map(|v| v.exp()).sum();
                    for a in 0..2 {
                        let want: f32 = (start..start + n)
                            .zip(&s)
                            .map(|(j, sj)| sj.exp() / z * m[j][8 + h * 2 + a])
                            .sum();
                        assert!(
                            (ctx[i][h * 2 + a] - want).abs() < 1e-5,
                            "token {i} head {h}"
                        );
                    }
                }
            }
        }

        let r = Tensor::from_vec(vals(tokens * hidden, 4.0), (tokens, hidden), dev).unwrap();
        let norm = Tensor::from_vec(vals(2 * hidden, 5.0), (2, hidden), dev).unwrap();
        let got = x
            .apply_op3_no_bwd(&r, &norm, &AddNorm { eps: 1e-12 })
            .unwrap();
        let gb = norm.to_vec2::<f32>().unwrap();
        let want = candle_nn::ops::layer_norm(
            &(&x + &r).unwrap(),
            &Tensor::new(gb[0].as_slice(), dev).unwrap(),
            &Tensor::new(gb[1].as_slice(), dev).unwrap(),
            1e-12,
        )
        .unwrap();
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }
}
