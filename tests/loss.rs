//! The contrastive losses against PyTorch (tests/fixtures/losses.json and
//! gcse_losses.json, made by scripts/reference_losses.py;
//! distillcse_losses.json, by scripts/reference_distillcse.py;
//! rank_losses.json, by scripts/reference_rank.py, in `rank_checks`;
//! cross_encoder.json, by scripts/reference_cross.py): InfoNCE, GCSE's
//! Gaussian-decayed loss in each decay mode, DistillCSE's loss for each KD
//! function, the rank-distillation losses and the pair losses (binary
//! cross-entropy with soft targets, cosine MSE, CoSENT), the loss and
//! its gradients with respect to every embedding, in float64 (float32:
//! loss_f32.rs).

mod common;
mod loss_checks;
mod rank_checks;

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use gcse::loss::distill::{DistillConstants, DistillLoss, KdFunction};
use gcse::loss::gaussian_decay::{gcse_loss, Decay, DecayMode};
use gcse::objective::distillcse::{constants, ranked_rows, RankedRow};
use gcse::objective::group_shuffle::Shuffle;
use gcse::rng::SplitMix64;
use loss_checks::{check, check_gcse, check_grads, matrix, tensor, values};

#[test]
fn gcse_loss_and_gradients_match_pytorch_in_f64_for_every_decay_mode() {
    let worst = check_gcse::<Autodiff<NdArray<f64>>>(1e-6, 0.0, 0.0);
    eprintln!("largest relative error in f64: {worst:e}");
}

#[test]
fn the_decay_weight_is_one_without_decay_and_below_one_where_decayed() {
    type B = NdArray<f64>;
    let device = Default::default();
    let z = |rows: [[f64; 2]; 2]| Tensor::<B, 2>::from_data(TensorData::from(rows), &device);
    let (z1, z2, z3) = (
        z([[1.0, 0.0], [0.0, 1.0]]),
        z([[1.0, 0.1], [0.1, 1.0]]),
        z([[1.0, 1.0], [1.0, -1.0]]),
    );
    let s = std::f64::consts::FRAC_1_SQRT_2 / 0.05;
    // Row 0: the frozen model scores the pair higher (s < s'); row 1 lower.
    let frozen = Tensor::<B, 1>::from_data(TensorData::from([s + 0.1, -s - 0.1]), &device);
    let weight = |mode| {
        let out = gcse_loss(
            z1.clone(),
            z2.clone(),
            z3.clone(),
            frozen.clone(),
            0.05,
            Decay { mode, width: 0.17 },
        );
        values(out.weight)
    };
    let decayed = 1.0 - (-0.01f64 / (2.0 * 0.17 * 0.17)).exp();
    let official = weight(DecayMode::Official);
    assert!(
        (official[0] - decayed).abs() < 1e-12 && official[1] == 1.0,
        "{official:?} {}",
        official[0] - decayed
    );
    let paper = weight(DecayMode::Paper);
    assert!(
        (paper[0] - decayed).abs() < 1e-12 && (paper[1] - decayed).abs() < 1e-12,
        "{paper:?}"
    );
    assert_eq!(weight(DecayMode::None), vec![1.0, 1.0]);
}

#[test]
fn info_nce_and_its_gradients_match_pytorch_in_f64() {
    check::<Autodiff<NdArray<f64>>>(1e-6);
}

/// The batch constants of a fixture case: its teacher matrix in sorted
/// order, the student order it recorded.
fn distill_case<B: Backend>(
    case: &serde_json::Value,
    device: &B::Device,
) -> (Vec<RankedRow>, DistillConstants<B>) {
    let (teacher, _) = matrix(&case["inputs"]["teacher_cos"]);
    let mut rows = ranked_rows(&teacher, Shuffle::None, &mut SplitMix64::new(0));
    let (order, [n, k]) = matrix(&case["inputs"]["order"]);
    assert_eq!((n, k), (rows.len(), rows.len() - 1));
    for (i, row) in rows.iter_mut().enumerate() {
        row.order = order[i * k..(i + 1) * k]
            .iter()
            .map(|&c| c as usize)
            .collect();
    }
    let constants = constants(&rows, device);
    (rows, constants)
}

fn distill_loss_of(params: &serde_json::Value) -> DistillLoss {
    let f = |key: &str| params[key].as_f64().unwrap();
    DistillLoss {
        temperature: f("tau"),
        student_temperature: f("tau_s"),
        teacher_temperature: f("tau_t"),
        lambda: f("lambda"),
        kd: serde_json::from_value::<KdFunction>(params["kd"].clone()).unwrap(),
        contrastive: params["cl"].as_bool().unwrap(),
    }
}

#[test]
fn distillcse_loss_and_gradients_match_pytorch_in_f64() {
    type B = Autodiff<NdArray<f64>>;
    let device = Default::default();
    let cases = common::fixture("distillcse_losses.json")["cases"]
        .as_array()
        .unwrap()
        .clone();
    assert!(cases.len() >= 20);
    let mut worst = 0f64;
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let (rows, constants) = distill_case::<B>(case, &device);
        // The reference's own Group-P groups are ours: each recorded
        // permutation stays inside the groups gcse cuts the row into.
        if let Some(p) = case["params"]["p"].as_f64() {
            for row in &rows {
                let shuffle = Shuffle::GroupP { p };
                let mut expected = row.ranked.clone();
                let mut seen = row.order.clone();
                for g in shuffle.groups(&row.sorted) {
                    expected[g.clone()].sort();
                    seen[g].sort();
                }
                assert_eq!(seen, expected, "{name}: a column left its group");
            }
        } else {
            assert!(rows.iter().all(|r| r.order == r.ranked), "{name}");
        }
        let inputs = &case["inputs"];
        let z1 = tensor::<B>(&inputs["z1"], &device).require_grad();
        let z2 = tensor::<B>(&inputs["z2"], &device).require_grad();
        let out = distill_loss_of(&case["params"]).views(z1.clone(), z2.clone(), &constants);
        let grads = out.loss.backward();
        let loss = values(out.loss)[0];
        let expected = case["loss"].as_f64().unwrap();
        let err = (loss - expected).abs() / expected.abs();
        assert!(err < 1e-6, "{name}: loss {loss} vs PyTorch {expected}");
        worst = worst.max(err);
        worst = worst.max(check_grads(
            case,
            &grads,
            vec![("z1", z1), ("z2", z2)],
            1e-6,
        ));
    }
    eprintln!("{} cases, largest relative error {worst:e}", cases.len());
}

#[test]
fn group_p_with_singleton_groups_is_the_unshuffled_loss_and_p_1_shuffles_whole_rows() {
    type B = Autodiff<NdArray<f64>>;
    let device = Default::default();
    let case = &common::fixture("distillcse_losses.json")["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ce-groupp-2x2-n64")
        .unwrap()
        .clone();
    let (teacher, _) = matrix(&case["inputs"]["teacher_cos"]);
    let loss = distill_loss_of(&case["params"]);
    let z1 = tensor::<B>(&case["inputs"]["z1"], &device);
    let z2 = tensor::<B>(&case["inputs"]["z2"], &device);
    let loss_with = |shuffle: Shuffle, seed| {
        let rows = ranked_rows(&teacher, shuffle, &mut SplitMix64::new(seed));
        let out = loss.views(z1.clone(), z2.clone(), &constants::<B>(&rows, &device));
        (rows, values(out.loss)[0])
    };
    let (_, unshuffled) = loss_with(Shuffle::None, 0);
    let (rows, tiny) = loss_with(Shuffle::GroupP { p: 1e-4 }, 7);
    assert!(rows
        .iter()
        .all(|r| r.group_size == 1.0 && r.order == r.ranked));
    assert_eq!(tiny, unshuffled);
    let (rows, whole) = loss_with(Shuffle::GroupP { p: 1.0 }, 7);
    assert!(rows.iter().all(|r| r.group_size == 63.0));
    let moved = rows
        .iter()
        .filter(|r| r.order[..32] != r.ranked[..32])
        .count();
    assert_eq!(moved, 64, "one group permutes the whole row");
    assert!(whole > unshuffled, "{whole} vs {unshuffled}");
    let (rows, _) = loss_with(Shuffle::GroupP { p: 0.1 }, 7);
    let mean = rows.iter().map(|r| r.group_size).sum::<f64>() / 64.0;
    assert!((2.0..=16.0).contains(&mean), "mean group size {mean}");
}

#[test]
fn pair_losses_and_gradients_match_pytorch_in_f64() {
    use gcse::loss::pairs::{bce_with_logits, PairRegression, PairScores, Regression};
    use gcse::loss::BatchLoss;
    use loss_checks::{max_error, vector};
    type B = Autodiff<NdArray<f64>>;
    let device = Default::default();
    let golden = common::fixture("cross_encoder.json");
    let cases = golden["losses"].as_array().unwrap();
    let mut kinds = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let kind = case["loss_kind"].as_str().unwrap();
        kinds.push(kind);
        let floats = |k: &str| -> Vec<f64> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let (loss, grad) = if kind == "bce" {
            let logits = vector::<B>(&case["logits"], &device).require_grad();
            let targets = vector::<B>(&case["targets"], &device);
            let loss = bce_with_logits(logits.clone(), targets);
            let grads = loss.backward();
            (values(loss), values(logits.grad(&grads).unwrap()))
        } else {
            let z = loss_checks::tensor::<B>(&case["z"], &device).require_grad();
            let form = if kind == "mse" {
                Regression::Mse
            } else {
                Regression::Cosent
            };
            let loss = PairRegression {
                form,
                scale: case["scale"].as_f64().unwrap(),
            };
            let constants = PairScores {
                scores: vector::<B>(&case["scores"], &device),
                values: floats("scores"),
            };
            let out = loss.loss(z.clone(), &constants).loss;
            let grads = out.backward();
            (values(out), values(z.grad(&grads).unwrap()))
        };
        let expected_grad: Vec<f64> = if kind == "bce" {
            floats("grad")
        } else {
            loss_checks::matrix(&case["grad"]).0
        };
        let loss_error = max_error(&loss, &[case["loss"].as_f64().unwrap()]);
        let grad_error = max_error(&grad, &expected_grad);
        assert!(loss_error < 1e-9, "{name}: loss {loss:?}");
        assert!(grad_error < 1e-9, "{name}: gradient error {grad_error:e}");
        assert!(
            grad.iter().any(|g| g.abs() > 1e-6),
            "{name}: the gradient is not zero"
        );
    }
    for kind in ["bce", "mse", "cosent"] {
        assert!(kinds.contains(&kind), "the fixture has a {kind} case");
    }
}
