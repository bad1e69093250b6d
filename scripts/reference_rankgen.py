#!/usr/bin/env python3
"""PyTorch reference values for gcse's rankgen loss (post-training on LLM
rewrite chains; docs/methods-extensions.md section 3).

A transcription of the loss of "Refining sentence embedding models through
ranking sentences generation with LLMs", written from the method's
description and its reference code's behaviour:

- teacher logits A = cos(T_k, T_l) / tau_t over the list s_0..s_{n-1};
- per row i, the items j >= i (diagonal included) sorted descending into v
  (a stable sort: ties in list order); item j's place o = j - i, its rank r
  in v; B_ij = sgn * |A_ij - v[o]| with sgn = -1 when the item is ranked
  too high: r < o ("chain") or r < j (the reference code's test,
  "reference"), else +1; B_ji = B_ij;
- C = sign(B) * log(1 + omega * |B|); targets Y = A + C (constants);
- student logits S = cos(z_k, z_l) / tau over the whole list;
- ListMLE of each row of S in the order of Y's row: the columns permuted by
  `perm` first, then a stable descending sort of Y (ties in permutation
  order); the gathered logits shifted by their row maximum; per row
  sum_k [log(sum_{m >= k} exp(u_m) + 1e-7) - u_k], then the mean over rows.

Each case records, in float64, the inputs, the targets, the loss and its
gradient with respect to the list's embeddings. Fixture shape (read by
tests/loss.rs and by other tools): {"cases": [{"name", "params": {"tau",
"tau_t", "omega", "rank_sign"}, "inputs": {"z", "teacher", "perm"},
"targets", "loss", "grads": {"z"}}]}.

Usage:
  python3 scripts/reference_rankgen.py --out tests/fixtures/rankgen_losses.json
"""

import argparse
import json

import torch
import torch.nn.functional as F

EPS = 1e-7


def cosines(a, b):
    return F.cosine_similarity(a.unsqueeze(1), b.unsqueeze(0), dim=-1)


def targets(a, omega, rank_sign):
    n = a.shape[0]
    b = torch.zeros_like(a)
    for i in range(n):
        row = a[i, i:]
        order = torch.sort(row, descending=True, stable=True).indices
        for o in range(n - i):
            j = i + o
            r = int((order == o).nonzero()[0, 0])
            limit = o if rank_sign == "chain" else j
            sgn = -1.0 if r < limit else 1.0
            value = sgn * torch.abs(a[i, j] - row[order[o]])
            b[i, j] = value
            b[j, i] = value
    c = torch.sign(b) * torch.log(1 + omega * torch.abs(b))
    return a + c


def list_mle(student, target, perm):
    s = student[:, perm]
    y = target[:, perm]
    order = torch.sort(y, dim=-1, descending=True, stable=True).indices
    u = torch.gather(s, 1, order)
    u = u - u.max(dim=-1, keepdim=True).values
    tails = torch.flip(torch.cumsum(torch.flip(u.exp(), [1]), 1), [1])
    return (torch.log(tails + EPS) - u).sum(dim=-1).mean()


def chain_embeddings(n, d, noise, generator):
    """A drifting chain: each step moves the previous vector a little."""
    steps = torch.randn(n, d, generator=generator, dtype=torch.float64)
    path = torch.cumsum(steps * 0.4, dim=0) + torch.randn(d, generator=generator, dtype=torch.float64) * 2
    return path + noise * torch.randn(n, d, generator=generator, dtype=torch.float64)


def case(name, n, d, omega, rank_sign, seed):
    generator = torch.Generator().manual_seed(seed)
    teacher = chain_embeddings(n, d, 0.5, generator)
    z = chain_embeddings(n, d, 1.0, generator).requires_grad_(True)
    perm = torch.randperm(n, generator=generator)
    tau, tau_t = 0.05, 0.05
    y = targets(cosines(teacher, teacher) / tau_t, omega, rank_sign)
    loss = list_mle(cosines(z, z) / tau, y, perm)
    (grad,) = torch.autograd.grad(loss, z)
    return {
        "name": name,
        "params": {"tau": tau, "tau_t": tau_t, "omega": omega, "rank_sign": rank_sign},
        "inputs": {
            "z": z.detach().tolist(),
            "teacher": teacher.tolist(),
            "perm": perm.tolist(),
        },
        "targets": y.tolist(),
        "loss": loss.item(),
        "grads": {"z": grad.tolist()},
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    cases = []
    seed = 11
    for n in (4, 33):
        for rank_sign in ("chain", "reference"):
            for omega in (0.0, 0.5):
                seed += 1
                name = f"n{n}-{rank_sign}-omega{omega}"
                cases.append(case(name, n, 8, omega, rank_sign, seed))
    with open(args.out, "w") as f:
        json.dump({"cases": cases}, f, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
