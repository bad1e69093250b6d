#!/usr/bin/env python3
"""PyTorch reference values for gcse's DistillCSE loss.

A transcription of the loss as docs/methods-extensions.md section 1 reads
the authors' code: InfoNCE between the two dropout views (tau), plus lambda
times a distillation term on the student's view-1-vs-view-1 cosines
(diagonal masked) against the teacher's raw cosine matrix: both rows put in
the teacher's descending order (diagonal dropped), the student's columns
permuted inside Group-P groups, then `ce`, `kl` or `js` between
softmax(teacher / tau_t) and softmax(student / tau_s), mean over rows.

Each case records, in float64, the inputs (both views, the averaged teacher
matrix and the shuffled student order, so a case is deterministic), the
loss and its gradients with respect to both views. tests/loss.rs compares
gcse's loss against them.

Usage:
  python3 scripts/reference_distillcse.py --out tests/fixtures/distillcse_losses.json
"""

import argparse
import json

import torch
import torch.nn.functional as F


def cosines(a, b):
    return F.cosine_similarity(a.unsqueeze(1), b.unsqueeze(0), dim=-1)


def sort_teacher(teacher):
    """Each row's off-diagonal values, descending (ties: lower column first),
    and their columns."""
    n = teacher.shape[0]
    masked = teacher.clone()
    masked.fill_diagonal_(float("-inf"))
    values, columns = torch.sort(masked, dim=1, descending=True, stable=True)
    return values[:, : n - 1], columns[:, : n - 1]


def group_p_bounds(sorted_row, p):
    """Group ends over sorted positions: with q = softmax of the raw sorted
    cosines and c its cumulative sum, group g (of int(1/p), one more when
    those fall short of the whole mass) ends at the count of c < (g + 1) p;
    the last ends at the row's end."""
    c = torch.cumsum(torch.softmax(sorted_row, dim=0), dim=0)
    groups = int(1.0 / p)
    if groups * p < 1:
        groups += 1
    ends = [int((c < (g + 1) * p).sum()) for g in range(groups - 1)]
    return ends + [sorted_row.shape[0]]


def shuffled_order(sorted_values, columns, p, generator):
    order = columns.clone()
    if p is None:
        return order
    for i in range(order.shape[0]):
        start = 0
        for end in group_p_bounds(sorted_values[i], p):
            if end > start:
                perm = torch.randperm(end - start, generator=generator) + start
                order[i, start:end] = columns[i, perm]
                start = end
    return order


def distillcse_loss(z1, z2, teacher_sorted, order, tau, tau_s, tau_t, lam, kd, cl):
    n = z1.shape[0]
    l_cl = F.cross_entropy(cosines(z1, z2) / tau, torch.arange(n))
    student = cosines(z1, z1)
    student = student.masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    log_q = F.log_softmax(student.gather(1, order) / tau_s, dim=1)
    p = F.softmax(teacher_sorted / tau_t, dim=1)
    if kd == "ce":
        l_kd = -(p * log_q).sum(dim=1).mean()
    elif kd == "kl":
        l_kd = F.kl_div(log_q, p, reduction="batchmean")
    elif kd == "js":
        q = log_q.exp()
        log_m = (0.5 * (p + q)).log()
        l_kd = 0.5 * (
            F.kl_div(log_m, p, reduction="batchmean")
            + F.kl_div(log_m, q, reduction="batchmean")
        )
    else:
        raise ValueError(kd)
    return (l_cl if cl else 0.0) + lam * l_kd


def teacher_from_components(groups, alpha):
    """The mean raw cosine matrix of each group's components, two groups
    mixed alpha : 1 - alpha."""
    means = [torch.stack([cosines(c, c) for c in comps]).mean(dim=0) for comps in groups]
    if len(means) == 1:
        return means[0]
    return alpha * means[0] + (1 - alpha) * means[1]


def case(name, n, d, kd, p, groups, cl, seed, ties=False, lam=1.0):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    z2 = z1 + 0.3 * torch.randn(n, d, generator=g, dtype=torch.float64)
    components = [
        [z1 + 0.5 * torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(k)]
        for k in groups
    ]
    teacher = teacher_from_components(components, 0.33)
    if ties:
        teacher = torch.round(teacher * 4) / 4
    sorted_values, columns = sort_teacher(teacher)
    order = shuffled_order(sorted_values, columns, p, g)
    params = {"tau": 0.05, "tau_s": 0.025, "tau_t": 0.0125, "lambda": lam, "kd": kd, "p": p, "cl": cl}
    z1 = z1.clone().requires_grad_(True)
    z2 = z2.clone().requires_grad_(True)
    loss = distillcse_loss(
        z1, z2, sorted_values, order,
        params["tau"], params["tau_s"], params["tau_t"], lam, kd, cl,
    )
    loss.backward()
    grad_z2 = z2.grad if z2.grad is not None else torch.zeros_like(z2)
    return {
        "name": name,
        "params": params,
        "inputs": {
            "z1": z1.detach().tolist(),
            "z2": z2.detach().tolist(),
            "teacher_cos": teacher.tolist(),
            "order": order.tolist(),
        },
        "loss": loss.item(),
        "grads": {"z1": z1.grad.tolist(), "z2": grad_z2.tolist()},
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    cases = []
    seed = 0
    for kd in ["ce", "kl", "js"]:
        for p in [None, 0.1]:
            for groups in [[1], [3], [2, 2]]:
                seed += 1
                tag = f"{kd}-{'groupp' if p else 'noshuffle'}-{'x'.join(map(str, groups))}"
                cases.append(case(f"{tag}-n8", 8, 6, kd, p, groups, True, seed))
        seed += 1
        cases.append(case(f"{kd}-n2", 2, 6, kd, 0.1, [2], True, seed))
        seed += 1
        cases.append(case(f"{kd}-groupp-2x2-n64", 64, 8, kd, 0.1, [2, 2], True, seed))
        seed += 1
        cases.append(case(f"{kd}-distill-only-n8", 8, 6, kd, 0.1, [1], False, seed, lam=0.5))
    for p in [None, 0.1, 0.3, 1.0]:
        seed += 1
        cases.append(case(f"ce-ties-p{p}-n12", 12, 6, "ce", p, [1], True, seed, ties=True))
    with open(args.out, "w") as f:
        json.dump({"cases": cases}, f)
        f.write("\n")


if __name__ == "__main__":
    main()
