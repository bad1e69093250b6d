//! Padding tokenized sentences into tensors, and grouping sentences of
//! similar length so that batches carry little padding.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::tokenizer::Encoded;

/// A right-padded batch of token sequences.
#[derive(Debug, Clone)]
pub struct TokenBatch<B: Backend> {
    /// `[batch, seq]` token ids; padding holds the model's pad id.
    pub input_ids: Tensor<B, 2, Int>,
    /// `[batch, seq]` segment ids; 0 at padding.
    pub token_type_ids: Tensor<B, 2, Int>,
    /// `[batch, seq]` attention mask with Hugging Face's polarity:
    /// 1 at real tokens, 0 at padding.
    pub attention_mask: Tensor<B, 2, Int>,
}

impl<B: Backend> TokenBatch<B> {
    /// Pads `sequences` to the longest of them with `pad_id`.
    pub fn new(sequences: &[&Encoded], pad_id: u32, device: &B::Device) -> Self {
        let batch = sequences.len();
        let seq = sequences.iter().map(|s| s.ids.len()).max().unwrap_or(0);
        let mut ids = vec![pad_id as i64; batch * seq];
        let mut types = vec![0i64; batch * seq];
        let mut mask = vec![0i64; batch * seq];
        for (row, s) in sequences.iter().enumerate() {
            let base = row * seq;
            for (j, (&id, &ty)) in s.ids.iter().zip(&s.type_ids).enumerate() {
                ids[base + j] = id as i64;
                types[base + j] = ty as i64;
                mask[base + j] = 1;
            }
        }
        let tensor = |v: Vec<i64>| Tensor::from_data(TensorData::new(v, [batch, seq]), device);
        Self {
            input_ids: tensor(ids),
            token_type_ids: tensor(types),
            attention_mask: tensor(mask),
        }
    }

    /// Number of sequences.
    pub fn rows(&self) -> usize {
        self.input_ids.dims()[0]
    }

    /// Sequences `start..start + len`.
    pub fn rows_range(&self, start: usize, len: usize) -> Self {
        Self {
            input_ids: self.input_ids.clone().narrow(0, start, len),
            token_type_ids: self.token_type_ids.clone().narrow(0, start, len),
            attention_mask: self.attention_mask.clone().narrow(0, start, len),
        }
    }

    /// `[batch, seq]`, true at padding (the polarity Burn's attention masks use).
    pub fn padding_mask(&self) -> Tensor<B, 2, Bool> {
        self.attention_mask.clone().equal_elem(0)
    }

    /// `[batch, seq]`, 1.0 at real tokens and 0.0 at padding.
    pub fn float_mask(&self) -> Tensor<B, 2> {
        self.attention_mask.clone().float()
    }
}

/// Splits `0..lengths.len()` into batches of at most `batch_size` indices,
/// each batch holding sentences of similar length (longest first), so that
/// padding is small. Every index appears exactly once.
pub fn length_sorted_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order
        .chunks(batch_size.max(1))
        .map(|c| c.to_vec())
        .collect()
}
