//! The rank-distillation losses against PyTorch (tests/fixtures/rank_losses.json,
//! made by scripts/reference_rank.py) in float64, and their properties:
//! ListMLE is Plackett-Luce, ListNet ignores the diagonal, the consistency
//! of a symmetric matrix is 0, a missing buffer slot is an absent column.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use gcse::loss::gaussian_decay::{Decay, DecayMode};
use gcse::loss::infonce::{cosine_matrix, unit_rows};
use gcse::loss::rank::{
    consistency, cosent, list_mle, list_mle_order, list_net, BufferNegatives, Consistency,
    Listwise, RankConstants, RankLoss,
};

use crate::common;
use crate::loss_checks::{check_grads, matrix, max_error, tensor, values, vector};

type B = Autodiff<NdArray<f64>>;

fn ints<B: Backend>(
    values: Vec<usize>,
    shape: [usize; 2],
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let values: Vec<i64> = values.into_iter().map(|v| v as i64).collect();
    Tensor::from_data(
        TensorData::new(values, shape).convert::<B::IntElem>(),
        device,
    )
}

fn usizes(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// ListMLE's order of a fixture's teacher logits and permutation.
fn order_of<B: Backend>(inputs: &serde_json::Value, device: &B::Device) -> Tensor<B, 2, Int> {
    let (teacher, [n, _]) = matrix(&inputs["teacher"]);
    ints(
        list_mle_order(&teacher, &usizes(&inputs["perm"])),
        [n, n],
        device,
    )
}

/// The buffer negatives a fixture case records: `[n, m, d]` vectors and the
/// `[n, m]` mask of missing slots.
fn buffer_of<B: Backend>(inputs: &serde_json::Value, device: &B::Device) -> BufferNegatives<B> {
    let anchors = inputs["buffer"].as_array().unwrap();
    let (n, m) = (anchors.len(), anchors[0].as_array().unwrap().len());
    let flat: Vec<f64> = anchors.iter().flat_map(|a| matrix(a).0).collect();
    let d = flat.len() / (n * m);
    let missing: Vec<bool> = inputs["missing"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|b| b.as_bool().unwrap()))
        .collect();
    BufferNegatives {
        vectors: Tensor::from_data(
            TensorData::new(flat, [n, m, d]).convert::<B::FloatElem>(),
            device,
        ),
        missing: Tensor::<B, 2, Bool>::from_data(TensorData::new(missing, [n, m]), device),
    }
}

fn rank_loss_of(params: &serde_json::Value) -> RankLoss {
    let f = |key: &str| params[key].as_f64().unwrap();
    let parse = |key: &str| params[key].clone();
    RankLoss {
        temperature: f("tau"),
        student_temperature: f("tau_s"),
        beta: f("beta"),
        gamma: f("gamma"),
        listwise: serde_json::from_value::<Listwise>(parse("rank")).unwrap(),
        consistency: serde_json::from_value::<Consistency>(parse("consistency")).unwrap(),
        decay: Decay {
            mode: serde_json::from_value::<DecayMode>(parse("decay")).unwrap(),
            width: f("decay_width"),
        },
        anchors: false,
        negatives: false,
    }
}

/// Every fixture case: our loss and its gradients with respect to every
/// embedding the case records, within 1e-6 relative.
#[test]
fn rank_losses_and_gradients_match_pytorch_in_f64() {
    let device = Default::default();
    let cases = common::fixture("rank_losses.json")["cases"]
        .as_array()
        .unwrap()
        .clone();
    let mut kinds = std::collections::BTreeMap::new();
    let mut worst = 0f64;
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let kind = case["kind"].as_str().unwrap();
        *kinds.entry(kind).or_insert(0) += 1;
        let (inputs, params) = (&case["inputs"], &case["params"]);
        let f = |key: &str| params[key].as_f64().unwrap();
        let embedding = |key: &str| {
            (!inputs[key].is_null()).then(|| tensor::<B>(&inputs[key], &device).require_grad())
        };
        let (z1, z2) = (embedding("z1").unwrap(), embedding("z2").unwrap());
        let z3 = embedding("negatives");
        let loss = match kind {
            "listnet" => list_net(
                cosine_matrix(z1.clone(), z2.clone()) / f("tau_s"),
                tensor::<B>(&inputs["teacher"], &device),
            )
            .mean(),
            "listmle" => list_mle(
                cosine_matrix(z1.clone(), z2.clone()) / f("tau_s"),
                order_of(inputs, &device),
            )
            .mean(),
            "jsd" => consistency(
                cosine_matrix(z1.clone(), z2.clone()) / f("tau"),
                serde_json::from_value(params["form"].clone()).unwrap(),
            )
            .mean(),
            "cosent" => {
                let labels = values(vector::<NdArray<f64>>(&inputs["labels"], &device));
                let cosines = (unit_rows(z1.clone()) * unit_rows(z2.clone()))
                    .sum_dim(1)
                    .squeeze_dim(1);
                cosent(cosines, &labels, f("scale"))
            }
            "total" => {
                let constants = RankConstants {
                    teacher: tensor::<B>(&inputs["teacher"], &device),
                    order: order_of(inputs, &device),
                    frozen: (!inputs["frozen"].is_null())
                        .then(|| vector::<B>(&inputs["frozen"], &device)),
                    buffer: (!inputs["buffer"].is_null()).then(|| buffer_of::<B>(inputs, &device)),
                    dropped: Tensor::zeros([matrix(&inputs["z1"]).1[0]], &device),
                };
                let loss = RankLoss {
                    negatives: z3.is_some(),
                    ..rank_loss_of(params)
                };
                loss.views(z1.clone(), z2.clone(), z3.clone(), &constants)
                    .loss
            }
            other => panic!("{name}: unknown kind {other}"),
        };
        let grads = loss.backward();
        let ours = values(loss)[0];
        let expected = case["loss"].as_f64().unwrap();
        let err = (ours - expected).abs() / expected.abs().max(1e-3);
        assert!(err < 1e-6, "{name}: loss {ours} vs PyTorch {expected}");
        worst = worst.max(err);
        let mut embeddings = vec![("z1", z1), ("z2", z2)];
        embeddings.extend(z3.map(|z| ("negatives", z)));
        worst = worst.max(check_grads(case, &grads, embeddings, 1e-6));
    }
    for kind in ["listnet", "listmle", "jsd", "cosent", "total"] {
        assert!(
            kinds.get(kind).is_some_and(|&c| c >= 3),
            "{kind}: {kinds:?}"
        );
    }
    eprintln!("{} cases, largest relative error {worst:e}", cases.len());
}

/// -log of the Plackett-Luce probability of `order` under `scores`, by
/// sequential choice.
fn plackett_luce_nll(scores: &[f64], order: &[usize]) -> f64 {
    (0..order.len())
        .map(|j| {
            let rest: f64 = order[j..].iter().map(|&k| scores[k].exp()).sum();
            rest.ln() - scores[order[j]]
        })
        .sum()
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    permutations(n - 1)
        .into_iter()
        .flat_map(|p| {
            (0..n).map(move |at| {
                let mut q = p.clone();
                q.insert(at, n - 1);
                q
            })
        })
        .collect()
}

#[test]
fn list_mle_is_the_plackett_luce_likelihood_of_the_teacher_order() {
    type C = NdArray<f64>;
    let device = Default::default();
    for scores in [vec![0.3, -1.2, 2.0], vec![1.5, 0.2, -0.7, 0.9]] {
        let n = scores.len();
        let all = permutations(n);
        let total: f64 = all
            .iter()
            .map(|o| (-plackett_luce_nll(&scores, o)).exp())
            .sum();
        assert!((total - 1.0).abs() < 1e-12, "probabilities sum to {total}");
        for order in &all {
            // Row 0 is scored; the other rows repeat it so the matrix is square.
            let student =
                Tensor::<C, 2>::from_data(TensorData::new(scores.repeat(n), [n, n]), &device);
            let orders = ints::<C>(order.repeat(n), [n, n], &device);
            let ours = values(list_mle(student, orders))[0] * n as f64;
            let expected = plackett_luce_nll(&scores, order);
            assert!(
                (ours - expected).abs() < 1e-5,
                "{order:?}: {ours} vs Plackett-Luce {expected}"
            );
        }
    }
}

#[test]
fn list_mle_breaks_teacher_ties_in_the_permutation_order() {
    let teacher = [
        0.0, 1.0, 1.0, -0.0, //
        0.5, 0.5, 0.5, 0.5, //
        2.0, 0.0, 1.0, 0.0, //
        3.0, 2.0, 1.0, 0.0,
    ];
    let order = list_mle_order(&teacher, &[3, 1, 2, 0]);
    assert_eq!(&order[0..4], &[1, 2, 3, 0], "-0 ties with 0");
    assert_eq!(&order[4..8], &[3, 1, 2, 0]);
    assert_eq!(&order[8..12], &[0, 2, 3, 1]);
    assert_eq!(&order[12..16], &[0, 1, 2, 3]);
}

#[test]
fn list_net_ignores_the_diagonal_and_consistency_of_a_symmetric_matrix_is_zero() {
    type C = NdArray<f64>;
    let device = Default::default();
    let m = |rows: [[f64; 3]; 3]| Tensor::<C, 2>::from_data(TensorData::from(rows), &device);
    let student = [[9.0, 1.0, -2.0], [0.5, -7.0, 2.0], [3.0, 1.0, 4.0]];
    let teacher = [[1.0, 2.0, 0.0], [1.0, 5.0, -1.0], [0.0, 2.0, -3.0]];
    let mut other = (student, teacher);
    for i in 0..3 {
        other.0[i][i] = -50.0 + i as f64;
        other.1[i][i] = 80.0;
    }
    let a = values(list_net(m(student), m(teacher)));
    let b = values(list_net(m(other.0), m(other.1)));
    assert!(max_error(&a, &b) < 1e-12, "{a:?} vs {b:?}");
    assert!(a.iter().all(|&v| v > 0.0));

    let symmetric = m([[1.0, 0.2, -0.3], [0.2, 2.0, 0.7], [-0.3, 0.7, 0.1]]);
    let zero = values(consistency(symmetric, Consistency::Jsd));
    assert!(zero.iter().all(|v| v.abs() < 1e-12), "{zero:?}");
    assert!(values(consistency(m(student), Consistency::Jsd))
        .iter()
        .all(|&v| v > 0.0));
}

#[test]
fn cosent_is_zero_without_ordered_pairs_and_falls_as_the_order_is_learned() {
    type C = NdArray<f64>;
    let device = Default::default();
    let c = |v: [f64; 3]| Tensor::<C, 1>::from_data(TensorData::from(v), &device);
    assert_eq!(
        values(cosent(c([0.1, 0.9, 0.3]), &[2.0, 2.0, 2.0], 20.0)),
        vec![0.0]
    );
    let labels = [0.0, 5.0, 2.5];
    let wrong = values(cosent(c([0.9, 0.1, 0.5]), &labels, 20.0))[0];
    let right = values(cosent(c([0.1, 0.9, 0.5]), &labels, 20.0))[0];
    assert!(right < 0.01 && wrong > 10.0, "right {right}, wrong {wrong}");
}

/// A missing buffer slot is the same as a buffer without that column.
#[test]
fn a_missing_buffer_slot_leaves_the_loss_as_without_it() {
    type C = NdArray<f64>;
    let device = Default::default();
    let case = common::fixture("rank_losses.json")["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "total-listnet-buffer-n8")
        .unwrap()
        .clone();
    let inputs = &case["inputs"];
    let mut loss = rank_loss_of(&case["params"]);
    loss.beta = 0.0;
    loss.gamma = 0.0;
    let z1 = tensor::<C>(&inputs["z1"], &device);
    let z2 = tensor::<C>(&inputs["z2"], &device);
    let n = z1.dims()[0];
    let full = buffer_of::<C>(inputs, &device);
    let [_, m, _] = full.vectors.dims();
    let with = |buffer: BufferNegatives<C>| {
        let constants = RankConstants {
            teacher: tensor::<C>(&inputs["teacher"], &device),
            order: order_of(inputs, &device),
            frozen: None,
            buffer: Some(buffer),
            dropped: Tensor::zeros([n], &device),
        };
        values(loss.views(z1.clone(), z2.clone(), None, &constants).loss)[0]
    };
    // The last slot of every anchor marked missing, against the buffer
    // without that slot.
    let mut first_missing: Vec<bool> = values(full.missing.clone().int().float())
        .iter()
        .map(|&v| v > 0.5)
        .collect();
    for i in 0..n {
        first_missing[i * m + m - 1] = true;
    }
    let masked = BufferNegatives {
        vectors: full.vectors.clone(),
        missing: Tensor::<C, 2, Bool>::from_data(
            TensorData::new(first_missing.clone(), [n, m]),
            &device,
        ),
    };
    let shorter = BufferNegatives {
        vectors: full.vectors.clone().narrow(1, 0, m - 1),
        missing: Tensor::<C, 2, Bool>::from_data(TensorData::new(first_missing, [n, m]), &device)
            .narrow(1, 0, m - 1),
    };
    let (a, b) = (with(masked), with(shorter));
    assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    assert!(
        (a - with(full)).abs() > 1e-6,
        "the slot mattered before it was masked"
    );
}

/// tests/fixtures/rankgen_losses.json (scripts/reference_rankgen.py): the
/// ranking-corrected targets from the teacher's vectors, the loss and its
/// gradient with respect to the list's embeddings, in f64 within 1e-6
/// relative, for both sign tests, omega 0 and 0.5, lists of 4 and 33.
#[test]
fn rankgen_targets_loss_and_gradients_match_pytorch_in_f64() {
    use gcse::loss::rankgen::{list_targets, ListOrders, RankSign, RankgenLoss};
    use gcse::loss::BatchLoss;

    let device = Default::default();
    let fixture = common::fixture("rankgen_losses.json");
    let cases = fixture["cases"].as_array().unwrap();
    let mut covered = std::collections::BTreeSet::new();
    let mut worst = 0f64;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let params = &case["params"];
        let f = |key: &str| params[key].as_f64().unwrap();
        let sign: RankSign = serde_json::from_value(params["rank_sign"].clone()).unwrap();
        let (teacher, [n, _]) = matrix(&case["inputs"]["teacher"]);
        let targets = list_targets(&teacher, n, f("tau_t"), f("omega"), sign);
        let reference = matrix(&case["targets"]).0;
        let error = max_error(&targets, &reference);
        assert!(error < 1e-6, "{name}: targets off by {error:e}");
        if f("omega") > 0.0 {
            let other = match sign {
                RankSign::Chain => RankSign::Reference,
                RankSign::Reference => RankSign::Chain,
            };
            let changed = max_error(
                &list_targets(&teacher, n, f("tau_t"), f("omega"), other),
                &reference,
            );
            if n > 4 {
                assert!(
                    changed > 1e-3,
                    "{name}: the other sign test gives the same targets"
                );
            }
        }
        let perm = usizes(&case["inputs"]["perm"]);
        let order = ints::<B>(list_mle_order(&targets, &perm), [n, n], &device);
        let z = tensor::<B>(&case["inputs"]["z"], &device).require_grad();
        let loss = RankgenLoss { tau: f("tau") }
            .loss(
                z.clone(),
                &ListOrders {
                    lists: vec![(0, order)],
                },
            )
            .loss;
        let value = values(loss.clone())[0];
        let expected = case["loss"].as_f64().unwrap();
        let error = (value - expected).abs() / expected.abs().max(1.0);
        assert!(error < 1e-6, "{name}: loss {value} vs {expected}");
        worst = worst.max(error);
        let grads = loss.backward();
        worst = worst.max(check_grads::<B>(case, &grads, vec![("z", z)], 1e-6));
        covered.insert((n, format!("{sign:?}"), f("omega").to_bits()));
    }
    assert_eq!(
        covered.len(),
        8,
        "lists of 4 and 33, both signs, omega 0 and 0.5"
    );
    eprintln!("rankgen: largest relative error {worst:e}");
}
