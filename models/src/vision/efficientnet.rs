//! EfficientNet-Lite0 for inference: the ImageNet backbone without its classifier,
//! one photo at a time on the calling thread, activations pixel-major (each pixel's
//! channels contiguous).
//!
//! Batch norms are folded into the convolutions when the weights load, so a layer is
//! a matrix product or a depthwise filter plus a bias and ReLU6. Pointwise (1×1)
//! convolutions — nearly all the arithmetic — are gemm matrix products (candle's own
//! matrix engine, called directly as the text embedder's kernels do); depthwise
//! convolutions are written here, because candle's `conv2d` runs a grouped
//! convolution as one convolution per channel (up to 1,152 per layer) and pads only
//! symmetrically, while TensorFlow's "SAME" padding, which these weights were trained
//! with, puts the odd pixel at the bottom and right.

use safetensors::SafeTensors;
use safetensors::tensor::Dtype;

use crate::matmul::matmul;

use super::VisionError;

/// Width of the pooled features.
pub const FEATURES: usize = 1280;
/// Batch-norm epsilon of the TensorFlow original.
const BN_EPS: f32 = 1e-3;
const STEM: usize = 32;

/// One mobile inverted-bottleneck block of Lite0: (expansion, kernel, stride, in, out).
/// Lite0 is B0 without squeeze-excite, with ReLU6, and with stem and head fixed.
const BLOCKS: [(usize, usize, usize, usize, usize); 16] = [
    (1, 3, 1, 32, 16),
    (6, 3, 2, 16, 24),
    (6, 3, 1, 24, 24),
    (6, 5, 2, 24, 40),
    (6, 5, 1, 40, 40),
    (6, 3, 2, 40, 80),
    (6, 3, 1, 80, 80),
    (6, 3, 1, 80, 80),
    (6, 5, 1, 80, 112),
    (6, 5, 1, 112, 112),
    (6, 5, 1, 112, 112),
    (6, 5, 2, 112, 192),
    (6, 5, 1, 192, 192),
    (6, 5, 1, 192, 192),
    (6, 5, 1, 192, 192),
    (6, 3, 1, 192, 320),
];

/// The safetensors file's tensors, read as f32 with their shapes checked.
struct Weights<'a>(SafeTensors<'a>);

impl Weights<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, VisionError> {
        let bad = |why: String| VisionError::Weights {
            tensor: name.to_owned(),
            why,
        };
        let t = self.0.tensor(name).map_err(|e| bad(e.to_string()))?;
        if t.dtype() != Dtype::F32 {
            return Err(bad(format!("dtype {:?}, expected F32", t.dtype())));
        }
        if t.shape() != shape {
            return Err(bad(format!("shape {:?}, expected {shape:?}", t.shape())));
        }
        Ok(t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect())
    }

    /// A convolution's weight `[out, …]` with the batch norm `bn` folded in: each
    /// output channel scaled by γ/√(σ²+ε), and the bias β − μ·γ/√(σ²+ε).
    fn folded(
        &self,
        conv: &str,
        shape: &[usize],
        bn: &str,
    ) -> Result<(Vec<f32>, Vec<f32>), VisionError> {
        let mut w = self.get(&format!("{conv}.weight"), shape)?;
        let out = shape[0];
        let [gamma, beta, mean, var] = ["weight", "bias", "running_mean", "running_var"]
            .map(|p| self.get(&format!("{bn}.{p}"), &[out]));
        let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
        let per_out = w.len() / out;
        let mut bias = Vec::with_capacity(out);
        for (o, row) in w.chunks_exact_mut(per_out).enumerate() {
            let scale = gamma[o] / (var[o] + BN_EPS).sqrt();
            row.iter_mut().for_each(|v| *v *= scale);
            bias.push(beta[o] - mean[o] * scale);
        }
        Ok((w, bias))
    }
}

/// A 1×1 convolution: `[pixels × in] · [in × out]`, plus bias, then ReLU6 or not.
struct Pointwise {
    cin: usize,
    cout: usize,
    /// `[out][in]`.
    weight: Vec<f32>,
    bias: Vec<f32>,
    relu6: bool,
}

impl Pointwise {
    fn load(
        w: &Weights,
        conv: &str,
        bn: &str,
        (cin, cout): (usize, usize),
        relu6: bool,
    ) -> Result<Pointwise, VisionError> {
        let (weight, bias) = w.folded(conv, &[cout, cin, 1, 1], bn)?;
        Ok(Pointwise {
            cin,
            cout,
            weight,
            bias,
            relu6,
        })
    }

    fn forward(&self, x: &[f32], pixels: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; pixels * self.cout];
        // b(r = in, c = out) sits at out·cin + in: the weight transposed by strides.
        matmul(
            (pixels, self.cout, self.cin),
            &mut out,
            self.cout,
            false,
            x,
            self.cin,
            &self.weight,
            (1, self.cin),
            1.0,
        );
        bias_act(&mut out, &self.bias, self.relu6);
        out
    }
}

/// TensorFlow's "SAME" padding along one axis: the output size and the padding before
/// the first pixel (the odd pixel of an uneven total goes after the last).
fn same(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(size);
    (out, total / 2)
}

/// A k×k depthwise convolution (one filter per channel), then bias and ReLU6.
struct Depthwise {
    channels: usize,
    kernel: usize,
    stride: usize,
    /// `[ky][kx][channel]`: the taps of one kernel position for all channels together.
    taps: Vec<f32>,
    bias: Vec<f32>,
}

impl Depthwise {
    fn load(
        w: &Weights,
        conv: &str,
        bn: &str,
        (channels, kernel, stride): (usize, usize, usize),
    ) -> Result<Depthwise, VisionError> {
        let (weight, bias) = w.folded(conv, &[channels, 1, kernel, kernel], bn)?;
        let kk = kernel * kernel;
        let mut taps = vec![0.0f32; kk * channels];
        for c in 0..channels {
            for k in 0..kk {
                taps[k * channels + c] = weight[c * kk + k];
            }
        }
        Ok(Depthwise {
            channels,
            kernel,
            stride,
            taps,
            bias,
        })
    }

    /// `x` is `h`×`w` pixels; returns the output and its height and width.
    fn forward(&self, x: &[f32], h: usize, w: usize) -> (Vec<f32>, usize, usize) {
        let (oh, _) = same(h, self.kernel, self.stride);
        let (ow, _) = same(w, self.kernel, self.stride);
        let mut out = vec![0.0f32; oh * ow * self.channels];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F, checked just above.
                unsafe { self.filter_avx512(x, h, w, &mut out) };
                return (out, oh, ow);
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: the CPU has AVX2 and FMA, checked just above.
                unsafe { self.filter_avx2(x, h, w, &mut out) };
                return (out, oh, ow);
            }
        }
        self.filter(x, h, w, &mut out);
        (out, oh, ow)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn filter_avx512(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        self.filter(x, h, w, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn filter_avx2(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        self.filter(x, h, w, out)
    }

    /// The layer, inlined into the `target_feature` copies above so that the loop over
    /// a pixel's channels is compiled for each instruction set from this one body.
    #[inline(always)]
    fn filter(&self, x: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let (c, k, s) = (self.channels, self.kernel, self.stride);
        let (oh, pad_top) = same(h, k, s);
        let (ow, pad_left) = same(w, k, s);
        for oy in 0..oh {
            for ox in 0..ow {
                let acc = &mut out[(oy * ow + ox) * c..][..c];
                acc.copy_from_slice(&self.bias);
                for ky in 0..k {
                    let Some(iy) = (oy * s + ky).checked_sub(pad_top).filter(|&y| y < h) else {
                        continue;
                    };
                    for kx in 0..k {
                        let Some(ix) = (ox * s + kx).checked_sub(pad_left).filter(|&x| x < w)
                        else {
                            continue;
                        };
                        let pixel = &x[(iy * w + ix) * c..][..c];
                        let tap = &self.taps[(ky * k + kx) * c..][..c];
                        for ((o, p), t) in acc.iter_mut().zip(pixel).zip(tap) {
                            *o += p * t;
                        }
                    }
                }
                acc.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
            }
        }
    }
}

fn relu6(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
}

fn bias_act(x: &mut [f32], bias: &[f32], relu: bool) {
    for row in x.chunks_exact_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    }
    if relu {
        relu6(x);
    }
}

struct Block {
    expand: Option<Pointwise>,
    depthwise: Depthwise,
    project: Pointwise,
    residual: bool,
}

/// The stem: a 3×3 stride-2 convolution over RGB, as a matrix product over 3×3×3
/// patches.
struct Stem {
    /// `[out][ky][kx][in]`, matching the patch layout.
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Stem {
    fn forward(&self, x: &[f32], h: usize, w: usize) -> (Vec<f32>, usize, usize) {
        let (oh, pad_top) = same(h, 3, 2);
        let (ow, pad_left) = same(w, 3, 2);
        let mut patches = vec![0.0f32; oh * ow * 27];
        for oy in 0..oh {
            for ox in 0..ow {
                let patch = &mut patches[(oy * ow + ox) * 27..][..27];
                for ky in 0..3 {
                    let Some(iy) = (oy * 2 + ky).checked_sub(pad_top).filter(|&y| y < h) else {
                        continue;
                    };
                    for kx in 0..3 {
                        let Some(ix) = (ox * 2 + kx).checked_sub(pad_left).filter(|&x| x < w)
                        else {
                            continue;
                        };
                        patch[(ky * 3 + kx) * 3..][..3]
                            .copy_from_slice(&x[(iy * w + ix) * 3..][..3]);
                    }
                }
            }
        }
        let mut out = vec![0.0f32; oh * ow * STEM];
        matmul(
            (oh * ow, STEM, 27),
            &mut out,
            STEM,
            false,
            &patches,
            27,
            &self.weight,
            (1, 27),
            1.0,
        );
        bias_act(&mut out, &self.bias, true);
        (out, oh, ow)
    }
}

/// The network, loaded and folded; shared across threads by reference.
pub struct EfficientNetLite0 {
    stem: Stem,
    blocks: Vec<Block>,
    head: Pointwise,
}

impl EfficientNetLite0 {
    /// From the converted package's safetensors (names as in its PyTorch state dict);
    /// every tensor's shape is checked against Lite0's.
    pub fn from_safetensors(bytes: &[u8]) -> Result<EfficientNetLite0, VisionError> {
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| VisionError::Weights {
            tensor: "(header)".into(),
            why: e.to_string(),
        })?;
        let w = Weights(tensors);
        let (stem_w, stem_bias) = w.folded("_conv_stem", &[STEM, 3, 3, 3], "_bn0")?;
        // [out][in][ky][kx] -> [out][ky][kx][in]
        let mut stem_weight = vec![0.0f32; stem_w.len()];
        for o in 0..STEM {
            for i in 0..3 {
                for k in 0..9 {
                    stem_weight[o * 27 + k * 3 + i] = stem_w[o * 27 + i * 9 + k];
                }
            }
        }
        let blocks = BLOCKS
            .iter()
            .enumerate()
            .map(|(n, &(expansion, kernel, stride, cin, cout))| {
                let p = format!("_blocks.{n}");
                let mid = cin * expansion;
                // Block 0 has no expansion, so its batch norms are numbered from 1.
                let expand = (expansion != 1)
                    .then(|| {
                        Pointwise::load(
                            &w,
                            &format!("{p}._expand_conv"),
                            &format!("{p}._bn0"),
                            (cin, mid),
                            true,
                        )
                    })
                    .transpose()?;
                Ok(Block {
                    expand,
                    depthwise: Depthwise::load(
                        &w,
                        &format!("{p}._depthwise_conv"),
                        &format!("{p}._bn1"),
                        (mid, kernel, stride),
                    )?,
                    project: Pointwise::load(
                        &w,
                        &format!("{p}._project_conv"),
                        &format!("{p}._bn2"),
                        (mid, cout),
                        false,
                    )?,
                    residual: stride == 1 && cin == cout,
                })
            })
            .collect::<Result<_, VisionError>>()?;
        let head = Pointwise::load(&w, "_conv_head", "_bn1", (320, FEATURES), true)?;
        Ok(EfficientNetLite0 {
            stem: Stem {
                weight: stem_weight,
                bias: stem_bias,
            },
            blocks,
            head,
        })
    }

    /// The pooled features of one input (`h`×`w` pixels × RGB, pixel-major, already
    /// normalised), on this thread.
    pub fn features(&self, input: &[f32], h: usize, w: usize) -> Vec<f32> {
        assert_eq!(input.len(), h * w * 3, "input is h × w × 3");
        let (mut x, mut h, mut w) = self.stem.forward(input, h, w);
        for block in &self.blocks {
            let expanded = match &block.expand {
                Some(e) => e.forward(&x, h * w),
                None => x.clone(),
            };
            let (filtered, oh, ow) = block.depthwise.forward(&expanded, h, w);
            drop(expanded);
            let mut projected = block.project.forward(&filtered, oh * ow);
            if block.residual {
                projected.iter_mut().zip(&x).for_each(|(p, s)| *p += s);
            }
            (x, h, w) = (projected, oh, ow);
        }
        let head = self.head.forward(&x, h * w);
        let mut pooled = vec![0.0f32; FEATURES];
        for pixel in head.chunks_exact(FEATURES) {
            pooled.iter_mut().zip(pixel).for_each(|(p, v)| *p += v);
        }
        let n = (h * w) as f32;
        pooled.iter_mut().for_each(|p| *p /= n);
        pooled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_is_tensorflows() {
        // 224 → 112 with a 3×3 stride-2 kernel: one pixel of padding, after.
        assert_eq!(same(224, 3, 2), (112, 0));
        // 28 → 14 with 5×5 stride 2: three pixels, one before and two after.
        assert_eq!(same(28, 5, 2), (14, 1));
        assert_eq!(same(14, 5, 1), (14, 2));
        assert_eq!(same(7, 3, 1), (7, 1));
    }

    /// A random layer run through the dispatched path (AVX-512 or AVX2 where the CPU
    /// has them) and through the portable body: the same numbers (no FMA contraction
    /// in either, so bit for bit), on both kernel sizes and strides.
    #[test]
    fn simd_paths_agree_with_the_portable_one() {
        for (channels, kernel, stride, h, w) in [(96, 3, 2, 15, 12), (131, 5, 1, 9, 7)] {
            let kk = kernel * kernel;
            let layer = Depthwise {
                channels,
                kernel,
                stride,
                taps: (0..kk * channels)
                    .map(|i| (i as f32 * 0.37).sin())
                    .collect(),
                bias: (0..channels).map(|i| (i as f32 * 0.05).cos()).collect(),
            };
            let x: Vec<f32> = (0..h * w * channels)
                .map(|i| (i as f32 * 0.11).cos())
                .collect();
            let (got, oh, ow) = layer.forward(&x, h, w);
            let mut want = vec![0.0f32; oh * ow * channels];
            layer.filter(&x, h, w, &mut want);
            assert_eq!(got, want);
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                let mut avx2 = vec![0.0f32; oh * ow * channels];
                // SAFETY: checked just above.
                unsafe { layer.filter_avx2(&x, h, w, &mut avx2) };
                assert_eq!(avx2, want);
            }
            assert!(got.iter().all(|v| (0.0..=6.0).contains(v)));
        }
    }
}
