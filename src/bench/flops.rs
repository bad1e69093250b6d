//! Model FLOPs of the benchmarked workloads, counted as matrix products
//! (2 FLOPs per multiply-add), the convention of MFU figures: every dense
//! layer, the attention scores and their weighted sum; not softmax, norms,
//! activations or the embedding lookup. Both workloads pool `cls`, which
//! reads the last layer at position 0 only, so the count is what that needs
//! ([`crate::model::bert::LastLayer::FirstToken`]): the last layer's keys
//! and values at every position, the rest of it at position 0 (PyTorch
//! computes the whole last layer; its rate is reported on this same
//! count). A training step counts 3x its forward pass (forward, gradients
//! of activations, gradients of weights).

use crate::model::config::BertConfig;

/// Forward FLOPs of `rows` sequences of `seq` tokens through the encoder,
/// the last layer at position 0, and the `cls` pooler's dense layer.
pub fn forward(config: &BertConfig, rows: usize, seq: usize) -> f64 {
    let (d, f, l) = (
        config.hidden_size as f64,
        config.intermediate_size as f64,
        config.num_hidden_layers as f64,
    );
    let s = seq as f64;
    // Q, K, V and output projections; the two feed-forward layers; Q K^T
    // and the attention-weighted sum of V.
    let per_layer = 2.0 * s * (4.0 * d * d + 2.0 * d * f) + 2.0 * 2.0 * s * s * d;
    // K and V at every position, the rest for one query.
    let last = 2.0 * s * 2.0 * d * d + 2.0 * (2.0 * d * d + 2.0 * d * f) + 2.0 * 2.0 * s * d;
    let pooler = 2.0 * d * d;
    rows as f64 * ((l - 1.0) * per_layer + last + pooler)
}

/// FLOPs of one SimCSE training step on `batch` sentences (`2 * batch`
/// rows) of `seq` tokens; the contrastive loss's `batch x batch` product is
/// included.
pub fn train_step(config: &BertConfig, batch: usize, seq: usize) -> f64 {
    let similarity = 2.0 * (batch * batch * config.hidden_size) as f64;
    3.0 * (forward(config, 2 * batch, seq) + similarity)
}

#[cfg(test)]
mod tests {
    use burn::backend::NdArray;
    use burn::module::Module;

    use super::*;
    use crate::bench::preset;
    use crate::model::encoder::SentenceEncoderConfig;

    #[test]
    fn dense_flops_are_twice_the_weights_per_computed_row() {
        let config = preset("minilm-l6").unwrap();
        let encoder =
            SentenceEncoderConfig::new(config.clone()).init::<NdArray>(&Default::default());
        let (d, s) = (config.hidden_size, 32);
        let embeddings =
            (config.vocab_size + config.max_position_embeddings + config.type_vocab_size + 2) * d;
        let pooler = d * d + d;
        // Biases (Q, K, V, output, two feed-forward) and two layer norms.
        let not_products = config.num_hidden_layers * (9 * d + config.intermediate_size);
        let weights = (encoder.num_params() - embeddings - pooler - not_products) as f64;
        let layers = config.num_hidden_layers as f64;
        let (per_layer, key_value) = (weights / layers, 2.0 * (d * d) as f64);
        let last = s as f64 * 2.0 * key_value + 2.0 * (per_layer - key_value);
        let attention = 4.0 * ((config.num_hidden_layers - 1) * s * s * d + s * d) as f64;
        let expected =
            s as f64 * 2.0 * per_layer * (layers - 1.0) + last + attention + 2.0 * (d * d) as f64;
        let counted = forward(&config, 1, s);
        assert!(
            (expected - counted).abs() / expected < 1e-12,
            "{counted} vs {expected}"
        );
        let step = train_step(&config, 64, s);
        let rows = forward(&config, 128, s);
        assert!(
            step > 3.0 * rows && step < 3.0 * rows * 1.001,
            "{step} vs {rows}"
        );
    }
}
