//! Loading and writing checkpoints with Hugging Face tensor names: the name
//! table both ways, prefixes and aliases, and the errors a bad checkpoint gives.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Tensor;
use common::{temp_dir, tiny_config, write_tiny_model, Cpu};
use gcse::data::batcher::TokenBatch;
use gcse::data::tokenizer::Encoded;
use gcse::model::config::Architecture;
use gcse::model::encoder::{SentenceEncoder, SentenceEncoderConfig};
use gcse::model::load::{load_weights, LoadedModel};
use gcse::model::pooling::Pooling;
use gcse::Error;
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;

/// Tensor name → (shape, little-endian f32 bytes) of a safetensors file.
fn read_tensors(path: &Path) -> BTreeMap<String, (Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| (name, (view.shape().to_vec(), view.data().to_vec())))
        .collect()
}

fn write_tensors(path: &Path, tensors: &BTreeMap<String, (Vec<usize>, Vec<u8>)>) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, (shape, data))| {
            (
                n.clone(),
                TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn sample_batch() -> TokenBatch<Cpu> {
    let a = Encoded {
        ids: vec![2, 5, 6, 7, 8, 3],
        type_ids: vec![0; 6],
        truncated: false,
    };
    let b = Encoded {
        ids: vec![2, 11, 12, 3],
        type_ids: vec![0; 4],
        truncated: false,
    };
    TokenBatch::new(&[&a, &b], 0, &Default::default())
}

fn outputs(encoder: &SentenceEncoder<Cpu>, pooling: Pooling) -> Vec<f32> {
    encoder
        .forward(&sample_batch(), pooling)
        .into_data()
        .to_vec::<f32>()
        .unwrap()
}

fn fresh(architecture: Architecture) -> SentenceEncoder<Cpu> {
    SentenceEncoderConfig::new(tiny_config(architecture)).init(&Default::default())
}

fn assert_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
}

#[test]
fn weights_are_written_under_bert_model_names_in_pytorch_layout() {
    let dir = temp_dir("names");
    write_tiny_model(&dir, Architecture::Bert, 1);
    let tensors = read_tensors(&dir.join("model.safetensors"));
    let mut expected: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (name, shape) in [
        ("embeddings.word_embeddings.weight", vec![28, 16]),
        ("embeddings.position_embeddings.weight", vec![24, 16]),
        ("embeddings.token_type_embeddings.weight", vec![2, 16]),
        ("embeddings.LayerNorm.weight", vec![16]),
        ("embeddings.LayerNorm.bias", vec![16]),
        ("pooler.dense.weight", vec![16, 16]),
        ("pooler.dense.bias", vec![16]),
    ] {
        expected.insert(name.into(), shape);
    }
    for layer in 0..2 {
        let p = format!("encoder.layer.{layer}.");
        for (name, shape) in [
            ("attention.self.query.weight", vec![16, 16]),
            ("attention.self.query.bias", vec![16]),
            ("attention.self.key.weight", vec![16, 16]),
            ("attention.self.key.bias", vec![16]),
            ("attention.self.value.weight", vec![16, 16]),
            ("attention.self.value.bias", vec![16]),
            ("attention.output.dense.weight", vec![16, 16]),
            ("attention.output.dense.bias", vec![16]),
            ("attention.output.LayerNorm.weight", vec![16]),
            ("attention.output.LayerNorm.bias", vec![16]),
            // PyTorch stores Linear weights as [out, in].
            ("intermediate.dense.weight", vec![37, 16]),
            ("intermediate.dense.bias", vec![37]),
            ("output.dense.weight", vec![16, 37]),
            ("output.dense.bias", vec![16]),
            ("output.LayerNorm.weight", vec![16]),
            ("output.LayerNorm.bias", vec![16]),
        ] {
            expected.insert(format!("{p}{name}"), shape);
        }
    }
    let found: BTreeMap<String, Vec<usize>> = tensors
        .into_iter()
        .map(|(n, (shape, _))| (n, shape))
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn written_weights_load_back_to_the_same_encoder() {
    let dir = temp_dir("roundtrip");
    for arch in [Architecture::Bert, Architecture::Roberta] {
        let original = write_tiny_model(&dir, arch, 7);
        let mut loaded = fresh(arch);
        let report = load_weights(&mut loaded, &dir.join("model.safetensors")).unwrap();
        assert_eq!(report.loaded, 39);
        assert!(
            report.missing.is_empty() && report.unused.is_empty(),
            "{report:?}"
        );
        for pooling in Pooling::ALL {
            assert_close(&outputs(&original, pooling), &outputs(&loaded, pooling));
        }
    }
}

#[test]
fn task_model_prefixes_heads_and_old_names_are_understood() {
    let dir = temp_dir("prefix");
    let original = write_tiny_model(&dir, Architecture::Bert, 3);
    let path = dir.join("model.safetensors");
    let plain = read_tensors(&path);
    // As BertForCL (SimCSE) saves it: `bert.` prefix, the MLP head as
    // `mlp.dense`, an MLM head, and TF-style LayerNorm gamma/beta.
    let renamed: BTreeMap<_, _> = plain
        .iter()
        .map(|(n, v)| {
            let n = if let Some(rest) = n.strip_prefix("pooler.dense.") {
                format!("mlp.dense.{rest}")
            } else {
                format!("bert.{n}")
            };
            let n = n
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            (n, v.clone())
        })
        .chain([(
            "cls.predictions.bias".to_string(),
            (vec![28], vec![0u8; 28 * 4]),
        )])
        .collect();
    write_tensors(&path, &renamed);
    let mut loaded = fresh(Architecture::Bert);
    let report = load_weights(&mut loaded, &path).unwrap();
    assert_eq!(report.unused, vec!["cls.predictions.bias".to_string()]);
    assert!(report.missing.is_empty() && report.has_pooler());
    for pooling in [Pooling::Cls, Pooling::AvgTop2] {
        assert_close(&outputs(&original, pooling), &outputs(&loaded, pooling));
    }
}

#[test]
fn a_missing_pooler_is_reported_but_a_missing_layer_is_an_error() {
    let dir = temp_dir("missing");
    write_tiny_model(&dir, Architecture::Bert, 4);
    let path = dir.join("model.safetensors");
    let mut tensors = read_tensors(&path);
    tensors.retain(|n, _| !n.starts_with("pooler."));
    write_tensors(&path, &tensors);
    let report = load_weights(&mut fresh(Architecture::Bert), &path).unwrap();
    assert!(!report.has_pooler());
    assert_eq!(report.missing.len(), 2);

    tensors.remove("encoder.layer.1.output.dense.weight");
    write_tensors(&path, &tensors);
    let err = load_weights(&mut fresh(Architecture::Bert), &path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(err.contains("encoder.layer.1.output.dense.weight"), "{err}");
}

#[test]
fn a_shape_mismatch_names_the_tensor_and_both_shapes() {
    let dir = temp_dir("shape");
    write_tiny_model(&dir, Architecture::Bert, 5);
    let mut config = tiny_config(Architecture::Bert);
    config.intermediate_size = 40;
    std::fs::write(dir.join("config.json"), common::config_json(&config)).unwrap();
    let err = LoadedModel::<Cpu>::from_dir(&dir, &Default::default(), &Default::default())
        .err()
        .unwrap();
    assert!(matches!(err, Error::Load { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("`encoder.layer.0.intermediate.dense.weight` has shape [37, 16] in the file")
            && msg.contains("needs [40, 16]"),
        "{msg}"
    );
}

#[test]
fn roberta_positions_start_after_the_padding_index() {
    use gcse::model::load::NAME_TABLE;
    assert!(NAME_TABLE
        .iter()
        .any(|(hf, _)| *hf == "embeddings.position_embeddings"));
    let dir = temp_dir("roberta-pos");
    for (arch, unused_rows, used_row) in [
        (Architecture::Roberta, vec![0usize, 1], 2usize),
        (Architecture::Bert, vec![], 0),
    ] {
        write_tiny_model(&dir, arch, 6);
        let path = dir.join("model.safetensors");
        let reference = {
            let mut m = fresh(arch);
            load_weights(&mut m, &path).unwrap();
            outputs(&m, Pooling::ClsBeforePooler)
        };
        let perturbed = |row: usize| {
            let mut tensors = read_tensors(&path);
            let (_, data) = tensors
                .get_mut("embeddings.position_embeddings.weight")
                .unwrap();
            for b in &mut data[row * 16 * 4..(row + 1) * 16 * 4] {
                *b = b.wrapping_add(17);
            }
            let other = dir.join("perturbed.safetensors");
            write_tensors(&other, &tensors);
            let mut m = fresh(arch);
            load_weights(&mut m, &other).unwrap();
            outputs(&m, Pooling::ClsBeforePooler)
        };
        for row in unused_rows {
            assert_close(&reference, &perturbed(row));
        }
        let changed = perturbed(used_row);
        assert!(
            reference
                .iter()
                .zip(&changed)
                .any(|(a, b)| (a - b).abs() > 1e-4),
            "{arch:?}"
        );
    }
}

#[test]
fn dropout_is_active_only_on_an_autodiff_backend() {
    use burn::backend::Autodiff;
    use burn::module::AutodiffModule;
    let dir = temp_dir("dropout");
    write_tiny_model(&dir, Architecture::Bert, 8);
    let device = Default::default();
    let model = LoadedModel::<Autodiff<Cpu>>::from_dir(&dir, &Default::default(), &device).unwrap();
    let a = Encoded {
        ids: vec![2, 5, 6, 7, 3],
        type_ids: vec![0; 5],
        truncated: false,
    };
    let batch = TokenBatch::<Autodiff<Cpu>>::new(&[&a, &a], 0, &device);
    let train: Tensor<Autodiff<Cpu>, 2> = model.encoder.forward(&batch, Pooling::ClsBeforePooler);
    let rows = train.into_data().to_vec::<f32>().unwrap();
    assert!(
        rows[..16]
            .iter()
            .zip(&rows[16..])
            .any(|(x, y)| (x - y).abs() > 1e-4),
        "two dropout views differ"
    );
    let inference = model.encoder.valid();
    let batch = TokenBatch::<Cpu>::new(&[&a, &a], 0, &device);
    let rows = inference
        .forward(&batch, Pooling::ClsBeforePooler)
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert_close(&rows[..16], &rows[16..]);
}
