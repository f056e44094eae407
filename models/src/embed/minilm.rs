//! The BERT encoder of all-MiniLM-L6-v2 (6 layers, 384 wide, 12 heads), on candle
//! tensors, over *packed* titles: the tokens of every title in a batch are stacked
//! into one (tokens, 384) matrix with no padding, so each dense layer is one matrix
//! product over real tokens only and attention stays within each title (see
//! [`kernels`](super::kernels)). This is the same function as Hugging Face's
//! `BertModel` with its padding mask, without the padded rows.

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::kernels::{AddNorm, Attention, Dense};

/// The fields of the model's `config.json` the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

struct Layer {
    /// Query, key and value projections side by side: (hidden, 3 × hidden).
    qkv: (Tensor, Tensor),
    attention_out: (Tensor, Tensor),
    attention_norm: Tensor,
    up: (Tensor, Tensor),
    down: (Tensor, Tensor),
    output_norm: Tensor,
}

pub struct Encoder {
    words: Tensor,
    positions: Tensor,
    token_types: Tensor,
    embedding_norm: Tensor,
    layers: Vec<Layer>,
    heads: usize,
    eps: f32,
    max_positions: usize,
}

/// A PyTorch `Linear` (weight (out, in), bias (out)) as the (in, out) weight and bias
/// [`Dense`] takes.
fn linear(vb: &VarBuilder, inputs: usize, outputs: usize) -> Result<(Tensor, Tensor)> {
    let w = vb.get((outputs, inputs), "weight")?.t()?.contiguous()?;
    Ok((w, vb.get(outputs, "bias")?))
}

/// γ and β of a `LayerNorm`, stacked as the (2, hidden) tensor [`AddNorm`] takes.
fn norm(vb: &VarBuilder, hidden: usize) -> Result<Tensor> {
    Tensor::stack(&[vb.get(hidden, "weight")?, vb.get(hidden, "bias")?], 0)
}

impl Encoder {
    pub fn load(vb: VarBuilder, c: &Config) -> Result<Encoder> {
        if c.hidden_act != "gelu" || !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!(
                "unsupported BERT config: activation {:?}, hidden {} over {} heads",
                c.hidden_act,
                c.hidden_size,
                c.num_attention_heads
            );
        }
        let h = c.hidden_size;
        let e = vb.pp("embeddings");
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = vb.pp(format!("encoder.layer.{i}"));
                let a = l.pp("attention.self");
                let q = linear(&a.pp("query"), h, h)?;
                let k = linear(&a.pp("key"), h, h)?;
                let v = linear(&a.pp("value"), h, h)?;
                Ok(Layer {
                    qkv: (
                        Tensor::cat(&[q.0, k.0, v.0], 1)?.contiguous()?,
                        Tensor::cat(&[q.1, k.1, v.1], 0)?,
                    ),
                    attention_out: linear(&l.pp("attention.output.dense"), h, h)?,
                    attention_norm: norm(&l.pp("attention.output.LayerNorm"), h)?,
                    up: linear(&l.pp("intermediate.dense"), h, c.intermediate_size)?,
                    down: linear(&l.pp("output.dense"), c.intermediate_size, h)?,
                    output_norm: norm(&l.pp("output.LayerNorm"), h)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Encoder {
            words: e.get((c.vocab_size, h), "word_embeddings.weight")?,
            positions: e.get((c.max_position_embeddings, h), "position_embeddings.weight")?,
            token_types: e.get((c.type_vocab_size, h), "token_type_embeddings.weight")?,
            embedding_norm: norm(&e.pp("LayerNorm"), h)?,
            layers,
            heads: c.num_attention_heads,
            eps: c.layer_norm_eps as f32,
            max_positions: c.max_position_embeddings,
        })
    }

    /// The last hidden state of every token: `titles` holds each title's token ids
    /// (token type 0, as for single sentences); the answer is (Σ lengths, hidden), the
    /// titles' rows in order.
    pub fn forward(&self, titles: &[&[u32]]) -> Result<Tensor> {
        let dev = &Device::Cpu;
        let mut spans = Vec::with_capacity(titles.len());
        let (mut ids, mut positions) = (Vec::new(), Vec::new());
        for t in titles {
            if t.len() > self.max_positions {
                candle_core::bail!("{} tokens, the model takes {}", t.len(), self.max_positions);
            }
            spans.push((ids.len(), t.len()));
            ids.extend_from_slice(t);
            positions.extend(0..t.len() as u32);
        }
        let n = ids.len();
        let words = self
            .words
            .index_select(&Tensor::from_vec(ids, n, dev)?, 0)?;
        let positions = self
            .positions
            .index_select(&Tensor::from_vec(positions, n, dev)?, 0)?;
        let types = self
            .token_types
            .get(0)?
            .unsqueeze(0)?
            .broadcast_as(words.shape())?;
        let add_norm = AddNorm { eps: self.eps };
        let mut x =
            words.apply_op3_no_bwd(&(positions + types)?, &self.embedding_norm, &add_norm)?;
        let attention = Attention {
            heads: self.heads,
            spans: &spans,
        };
        let (plain, gelu) = (Dense { gelu: false }, Dense { gelu: true });
        for l in &self.layers {
            let qkv = x.apply_op3_no_bwd(&l.qkv.0, &l.qkv.1, &plain)?;
            let context = qkv.apply_op1_no_bwd(&attention)?;
            let projected =
                context.apply_op3_no_bwd(&l.attention_out.0, &l.attention_out.1, &plain)?;
            let attended = projected.apply_op3_no_bwd(&x, &l.attention_norm, &add_norm)?;
            let up = attended.apply_op3_no_bwd(&l.up.0, &l.up.1, &gelu)?;
            let down = up.apply_op3_no_bwd(&l.down.0, &l.down.1, &plain)?;
            x = down.apply_op3_no_bwd(&attended, &l.output_norm, &add_norm)?;
        }
        Ok(x)
    }
}
