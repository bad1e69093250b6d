//! all-MiniLM-L6-v2 against the PyTorch reference (scripts/reference_sts.py,
//! fixture tests/fixtures/minilm_embeddings.json): token ids, and sentence
//! vectors under every pooler on `cpu` and on `wgpu`; as a cross-encoder
//! (scripts/reference_cross.py, tests/fixtures/cross_encoder.json): pair
//! token ids and logits, and the same logits after an export.

mod common;

use burn::tensor::backend::AutodiffBackend;
use gcse::backend::{resolve, run, BackendKind, BackendTask, Resolved};
use gcse::data::tokenizer::SentenceTokenizer;
use gcse::embed::embedder::{cosine, Embedder};
use gcse::model::cross_encoder::LoadedCrossEncoder;
use gcse::model::export::{write_cross_encoder_folder, FolderMeta};
use gcse::model::load::LoadedModel;
use gcse::model::pooling::Pooling;

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn rows(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn token_ids_match_transformers_with_and_without_truncation() {
    let Some(dir) = common::minilm_dir("token_ids_match_transformers") else {
        return;
    };
    let golden = common::fixture("minilm_embeddings.json");
    let sentences = strings(&golden["sentences"]);
    let ids_of = |key: &str| -> Vec<Vec<u32>> {
        rows(&golden[key])
            .into_iter()
            .map(|r| r.into_iter().map(|x| x as u32).collect())
            .collect()
    };
    let full = ids_of("token_ids");
    let short_len = golden["short_max_len"].as_u64().unwrap() as usize;
    for (max_len, expected) in [(512, full.clone()), (short_len, ids_of("short_token_ids"))] {
        let tokenizer = SentenceTokenizer::from_model_dir(&dir, max_len).unwrap();
        let encoded = tokenizer.encode(&sentences).unwrap();
        let ids: Vec<Vec<u32>> = encoded.iter().map(|e| e.ids.clone()).collect();
        assert_eq!(ids, expected, "max_len {max_len}");
        assert!(encoded.iter().all(|e| e.type_ids.iter().all(|&t| t == 0)));
        let truncated: Vec<bool> = encoded.iter().map(|e| e.truncated).collect();
        let longer: Vec<bool> = full.iter().map(|f| f.len() > max_len).collect();
        assert_eq!(truncated, longer, "max_len {max_len}");
    }
    assert!(
        full.iter().any(|f| f.len() > short_len),
        "the fixture exercises truncation"
    );
}

/// The fixture sentences embedded under every pooler.
struct EmbedAll {
    dir: std::path::PathBuf,
    sentences: Vec<String>,
}

impl BackendTask for EmbedAll {
    type Output = Vec<(Pooling, Vec<Vec<f32>>)>;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let model =
            LoadedModel::<B::InnerBackend>::from_dir(&self.dir, &Default::default(), &device)
                .unwrap();
        Pooling::ALL
            .into_iter()
            .map(|pooling| {
                let embedder = Embedder {
                    encoder: &model.encoder,
                    tokenizer: &model.tokenizer,
                    pad_id: 0,
                    pooling,
                    batch_size: 4,
                    device: device.clone(),
                };
                let e = embedder
                    .embed(&self.sentences, &indicatif::ProgressBar::hidden())
                    .unwrap();
                (pooling, (0..e.rows()).map(|i| e.row(i).to_vec()).collect())
            })
            .collect()
    }
}

fn check_against_pytorch(test: &str, resolved: &Resolved) {
    let Some(dir) = common::minilm_dir(test) else {
        return;
    };
    let golden = common::fixture("minilm_embeddings.json");
    let sentences = strings(&golden["sentences"]);
    let ours = run(resolved, EmbedAll { dir, sentences });
    for (pooling, vectors) in ours {
        let expected = rows(&golden["embeddings"][pooling.name()]);
        assert_eq!(vectors.len(), expected.len());
        for (i, (v, e)) in vectors.iter().zip(&expected).enumerate() {
            let e32: Vec<f32> = e.iter().map(|&x| x as f32).collect();
            let cos = cosine(v, &e32);
            assert!(
                cos > 1.0 - 1e-4,
                "{resolved}: {pooling} sentence {i}: cosine {cos}"
            );
            let norm_ratio = (v.iter().map(|x| x * x).sum::<f32>()
                / e32.iter().map(|x| x * x).sum::<f32>())
            .sqrt();
            assert!(
                (norm_ratio - 1.0).abs() < 1e-3,
                "{resolved}: {pooling} sentence {i}: norm ratio {norm_ratio}"
            );
        }
    }
}

#[test]
fn cpu_embeddings_match_pytorch_for_every_pooler() {
    check_against_pytorch("cpu_embeddings_match_pytorch", &Resolved::Cpu);
}

/// Taken by the tests on `wgpu`: each runs the whole model on the one
/// device (lavapipe in CI, on the CPU cores), so two at once only compete.
static WGPU: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn wgpu_embeddings_match_pytorch_for_every_pooler() {
    let _wgpu = WGPU.lock().unwrap_or_else(|e| e.into_inner());
    let test = "wgpu_embeddings_match_pytorch";
    match resolve(BackendKind::Wgpu) {
        Ok(resolved) => check_against_pytorch(test, &resolved),
        Err(e) => common::skip(test, &e.to_string()),
    }
}

#[test]
fn a_vocab_txt_alone_tokenizes_like_the_tokenizer_json() {
    let Some(dir) = common::minilm_dir("a_vocab_txt_alone_tokenizes_like_the_tokenizer_json")
    else {
        return;
    };
    let golden = common::fixture("minilm_embeddings.json");
    let sentences = strings(&golden["sentences"]);
    let from_json = SentenceTokenizer::from_model_dir(&dir, 512)
        .unwrap()
        .encode(&sentences)
        .unwrap();
    let from_vocab = SentenceTokenizer::from_vocab(&dir.join("vocab.txt"), true, 512)
        .unwrap()
        .encode(&sentences)
        .unwrap();
    assert_eq!(from_json, from_vocab);
}

/// The fixture's cross-encoder on one backend: each pair's logit, and the
/// same after an export to a cross-encoder folder and a load back.
struct CrossLogits {
    dir: std::path::PathBuf,
    out: std::path::PathBuf,
}

impl BackendTask for CrossLogits {
    type Output = (Vec<f64>, Vec<f64>);

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        let golden = common::fixture("cross_encoder.json");
        let (a, b, _) = common::fixture_pairs(&golden);
        let cross = common::fixture_cross_encoder::<B::InnerBackend>(&self.dir, &golden, &device);
        let hidden = indicatif::ProgressBar::hidden();
        let logits = cross.scorer(5, &device).logits(&a, &b, &hidden).unwrap();
        let meta = FolderMeta {
            pooling: Pooling::Cls,
            max_len: 128,
            provenance: serde_json::Value::Null,
        };
        write_cross_encoder_folder(&cross.model, &self.dir, &self.out, &meta, &[]).unwrap();
        let back = LoadedCrossEncoder::<B::InnerBackend>::from_dir(
            &self.out,
            &Default::default(),
            1,
            &device,
        )
        .unwrap();
        assert!(back.head_loaded);
        let again = back.scorer(5, &device).logits(&a, &b, &hidden).unwrap();
        (logits, again)
    }
}

fn check_cross_encoder(test: &str, resolved: &Resolved) {
    let Some(dir) = common::minilm_dir(test) else {
        return;
    };
    let golden = common::fixture("cross_encoder.json");
    let (a, b, _) = common::fixture_pairs(&golden);
    let tokenizer = SentenceTokenizer::from_model_dir(&dir, 128).unwrap();
    let encoded = tokenizer.encode_pairs(&a, &b).unwrap();
    let ids: Vec<Vec<f64>> = encoded
        .iter()
        .map(|e| e.ids.iter().map(|&x| x as f64).collect())
        .collect();
    let types: Vec<Vec<f64>> = encoded
        .iter()
        .map(|e| e.type_ids.iter().map(|&x| x as f64).collect())
        .collect();
    assert_eq!(ids, rows(&golden["input_ids"]), "pair token ids");
    assert_eq!(types, rows(&golden["token_type_ids"]), "pair token types");
    let out = common::temp_dir(test);
    let (logits, again) = run(
        resolved,
        CrossLogits {
            dir,
            out: out.join("cross"),
        },
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("cross/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["architectures"][0], "BertForSequenceClassification");
    assert_eq!(config["id2label"].as_object().map(|m| m.len()), Some(1));
    let expected: Vec<f64> = golden["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let spread = expected.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
        - expected.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(spread > 1e-2, "the fixture's logits differ between pairs");
    let worst = logits
        .iter()
        .zip(&expected)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    eprintln!("{resolved}: largest logit difference from transformers {worst:e}");
    assert!(
        worst < 1e-4,
        "{resolved}: logits {logits:?} vs {expected:?}"
    );
    assert_eq!(
        logits, again,
        "{resolved}: the exported folder gives the same logits"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn cross_encoder_logits_match_transformers_on_cpu_and_survive_export() {
    check_cross_encoder("cpu_cross_encoder_logits", &Resolved::Cpu);
}

#[test]
fn cross_encoder_logits_match_transformers_on_wgpu() {
    let _wgpu = WGPU.lock().unwrap_or_else(|e| e.into_inner());
    let test = "wgpu_cross_encoder_logits";
    match resolve(BackendKind::Wgpu) {
        Ok(resolved) => check_cross_encoder(test, &resolved),
        Err(e) => common::skip(test, &e.to_string()),
    }
}

/// Mixed precision on `wgpu` (lavapipe has 16-bit shader floats, so CI runs
/// this): with the encoder's products in f16 the tiny model's pooled
/// vectors and every parameter's gradient stay f32 and within f16's
/// rounding of the f32 pass's, yet differ from them (the products did run
/// in f16).
#[test]
fn f16_products_give_f32_vectors_and_gradients_near_the_f32_ones() {
    use burn::backend::{Autodiff, Wgpu};
    use burn::tensor::{DType, FloatDType, Int, Tensor};
    use gcse::model::autocast::with_products_in;
    use gcse::model::config::Architecture;
    use gcse::model::encoder::{SentenceEncoder, SentenceEncoderConfig};

    type B = Autodiff<Wgpu>;
    let _wgpu = WGPU.lock().unwrap_or_else(|e| e.into_inner());
    let test = "f16_products_give_f32_vectors_and_gradients";
    let device = match resolve(BackendKind::Wgpu) {
        Ok(Resolved::Wgpu {
            device,
            shader_f16: true,
            ..
        }) => device,
        Ok(other) => return common::skip(test, &format!("{other} has no 16-bit shader floats")),
        Err(e) => return common::skip(test, &e.to_string()),
    };
    let mut config = common::tiny_config(Architecture::Bert);
    config.hidden_dropout_prob = 0.0;
    config.attention_probs_dropout_prob = 0.0;
    <B as burn::tensor::backend::Backend>::seed(&device, 11);
    let encoder: SentenceEncoder<B> = SentenceEncoderConfig::new(config.clone()).init(&device);
    let batch = common::padded_batch::<B>(&[7, 3, 5], config.vocab_size, 0, 2, &device);
    let pass = |products: Option<FloatDType>| {
        with_products_in(products, || {
            let z = encoder.forward(&batch, Pooling::Cls);
            assert_eq!(z.dtype(), DType::F32);
            let weights = Tensor::<B, 1, Int>::arange(0..z.dims()[1] as i64, &device)
                .float()
                .sin()
                .unsqueeze::<2>();
            let grads = (z.clone() * weights).sum().backward();
            let values = z.into_data().convert::<f64>().to_vec::<f64>().unwrap();
            (values, common::param_grads(&encoder, &grads))
        })
    };
    let (z32, g32) = pass(None);
    let (z16, g16) = pass(Some(FloatDType::F16));
    let worst = z32
        .iter()
        .zip(&z16)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max);
    assert!(worst < 1e-2, "vectors differ by {worst}");
    assert!(worst > 0.0, "f16 products gave the f32 vectors bit for bit");
    eprintln!("f16 products: vectors within {worst:.1e} of f32's");
    assert!(
        g16.iter().all(|g| !g.is_empty()),
        "a parameter lost its gradient"
    );
    // A parameter whose gradient is near 0 in f32 (the key bias's is 0 in
    // exact arithmetic: softmax ignores a shift common to a row) keeps f16's
    // rounding of the products around it: measured against 1% of the
    // largest gradient of any parameter.
    let largest = g32.iter().flatten().fold(0.0f64, |m, g| m.max(g.abs()));
    common::assert_gradients_close("f16 vs f32 products", &g32, &g16, 1e-2 * largest, 2e-2);
    assert_ne!(g32, g16, "f16 products gave the f32 gradients bit for bit");
}
