#!/usr/bin/env python3
"""PyTorch reference values for gcse's rank-distillation losses.

A transcription of docs/methods-extensions.md section 2 (RankCSE's terms,
the LLM hard negatives of GCSE stage 2 and a dynamic negative buffer):

- ListNet: top-1 cross-entropy between the row softmaxes of the teacher's
  and the student's logits, the diagonal masked on both sides (RankCSE's
  `-(q * log p).nansum() / q.nansum()`: the mean of the row sums).
- ListMLE: the Plackett-Luce negative log-likelihood of each row's teacher
  order under the student's logits, over all n columns; the columns are
  first permuted by `perm` so that ties in the teacher fall in the
  permutation's order (a stable sort after the permutation); the logits are
  shifted by the row maximum and 1e-7 is added inside the log (RankCSE);
  reduced by the mean over columns, then rows (RankCSE).
- JSD: ranking consistency between P = softmax_row(cos(z1, z2) / tau) and
  Q = softmax_row(cos(z2, z1) / tau), mean over rows; the form "rankcse"
  transcribes the community code (softmaxes clamped at 1e-7, log M clamped
  at 1e-7 after the log, KLDivLoss batchmean), which maximises entropy.
- CoSENT: log(1 + sum over pairs with y_p > y_q of exp(scale (c_q - c_p)))
  with c = cos(z1_i, z2_i).
- total: InfoNCE over [z1 x z2 | z1 x z3 (own negative decayed as in GCSE
  stage 2) | each anchor's buffer negatives (missing ones masked)] / tau,
  plus beta * JSD plus gamma * (ListNet or ListMLE) of cos(z1, z2) / tau_s
  against the teacher logits.

Each case records, in float64, the inputs, the loss and its gradients with
respect to the embeddings. tests/loss.rs compares gcse's losses against
them. Fixture shape: {"cases": [{"name", "kind", "params", "inputs": {"z1",
"z2", "teacher", "negatives", "buffer", "perm", ...}, "loss", "grads"}]}.

Usage:
  python3 scripts/reference_rank.py --out tests/fixtures/rank_losses.json
"""

import argparse
import itertools
import json
import math

import torch
import torch.nn.functional as F

from reference_losses import decayed_negatives

EPS = 1e-7


def cosines(a, b):
    return F.cosine_similarity(a.unsqueeze(1), b.unsqueeze(0), dim=-1)


def listnet(student, teacher):
    n = student.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    log_p = F.log_softmax(student.masked_fill(eye, float("-inf")), dim=-1)
    q = F.softmax(teacher.masked_fill(eye, float("-inf")), dim=-1)
    return -(q * log_p).nansum() / q.nansum()


def listmle_order(teacher, perm):
    """Each row's columns in the teacher's descending order, ties in the
    order of `perm`."""
    _, idx = torch.sort(teacher[:, perm], dim=-1, descending=True, stable=True)
    return perm[idx]


def listmle(student, order):
    s = student.gather(1, order)
    s = s - s.max(dim=1, keepdim=True).values
    cumsums = torch.cumsum(s.exp().flip(dims=[1]), dim=1).flip(dims=[1])
    return (torch.log(cumsums + EPS) - s).mean(dim=1).mean()


def plackett_luce_nll(scores, order):
    """-log P(order | scores) by the sequential-choice definition."""
    total = 0.0
    rest = list(order)
    while rest:
        exps = [math.exp(scores[k]) for k in rest]
        total -= math.log(exps[0] / sum(exps))
        rest = rest[1:]
    return total


def jsd(z1, z2, tau, form):
    s = cosines(z1, z2) / tau
    st = cosines(z2, z1) / tau
    if form == "rankcse":
        p = s.softmax(dim=-1).clamp(min=EPS)
        q = st.softmax(dim=-1).clamp(min=EPS)
        m = (0.5 * (p + q)).log().clamp(min=EPS)
        kl = torch.nn.KLDivLoss(reduction="batchmean", log_target=True)
        return 0.5 * (kl(m, p.log()) + kl(m, q.log()))
    log_p = F.log_softmax(s, dim=-1)
    log_q = F.log_softmax(st, dim=-1)
    p, q = log_p.exp(), log_q.exp()
    log_m = (0.5 * (p + q)).log()
    return (0.5 * (p * (log_p - log_m) + q * (log_q - log_m)).sum(dim=-1)).mean()


def cosent(z1, z2, labels, scale):
    c = F.cosine_similarity(z1, z2, dim=-1) * scale
    diff = c.unsqueeze(0) - c.unsqueeze(1)  # [p, q] = c_q - c_p
    chosen = diff[labels.unsqueeze(1) > labels.unsqueeze(0)]
    return torch.logsumexp(torch.cat([torch.zeros(1, dtype=c.dtype), chosen]), dim=0)


def total(z1, z2, z3, frozen, buffer, missing, teacher, order, params):
    tau = params["tau"]
    blocks = [cosines(z1, z2) / tau]
    if z3 is not None:
        blocks.append(decayed_negatives(z1, z3, frozen, tau, params["decay"], params["decay_width"]))
    if buffer is not None:
        u1 = F.normalize(z1, dim=-1)
        ub = F.normalize(buffer, dim=-1)
        own = torch.einsum("nd,nmd->nm", u1, ub) / tau
        blocks.append(own.masked_fill(missing, float("-inf")))
    l_cl = F.cross_entropy(torch.cat(blocks, dim=1), torch.arange(z1.shape[0]))
    loss = l_cl
    if params["beta"] > 0:
        loss = loss + params["beta"] * jsd(z1, z2, tau, params["consistency"])
    if params["gamma"] > 0:
        student = cosines(z1, z2) / params["tau_s"]
        rank = listnet(student, teacher) if params["rank"] == "listnet" else listmle(student, order)
        loss = loss + params["gamma"] * rank
    return loss


def views(g, n, d):
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64)
    z2 = z1 + 0.4 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return z1, z2


def teacher_logits(g, z1, tau_t, ties=False):
    """A teacher's logits: the cosines of noisy copies of z1 over tau_t,
    rounded to quarters first when `ties`."""
    t = z1 + 0.6 * torch.randn(z1.shape, generator=g, dtype=torch.float64)
    cos = cosines(t, t)
    if ties:
        cos = torch.round(cos * 4) / 4
    return cos / tau_t


def record(name, kind, params, tensors, extra, loss):
    loss.backward()
    grads = {k: (v.grad if v.grad is not None else torch.zeros_like(v)).tolist() for k, v in tensors.items()}
    inputs = {k: v.detach().tolist() for k, v in tensors.items()}
    inputs.update(extra)
    return {"name": name, "kind": kind, "params": params, "inputs": inputs, "loss": loss.item(), "grads": grads}


def rank_case(name, kind, n, d, seed, ties=False, tau_s=0.05, tau_t=0.05):
    g = torch.Generator().manual_seed(seed)
    z1, z2 = views(g, n, d)
    teacher = teacher_logits(g, z1, tau_t, ties)
    perm = torch.randperm(n, generator=g)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    student = cosines(z1, z2) / tau_s
    if kind == "listnet":
        loss = listnet(student, teacher)
    else:
        loss = listmle(student, listmle_order(teacher, perm))
    extra = {"teacher": teacher.tolist(), "perm": perm.tolist()}
    return record(name, kind, {"tau_s": tau_s, "tau_t": tau_t}, {"z1": z1, "z2": z2}, extra, loss)


def jsd_case(name, n, d, seed, form, tau=0.05):
    g = torch.Generator().manual_seed(seed)
    z1, z2 = views(g, n, d)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    loss = jsd(z1, z2, tau, form)
    return record(name, "jsd", {"tau": tau, "form": form}, {"z1": z1, "z2": z2}, {}, loss)


def cosent_case(name, n, d, seed, ties, scale=20.0):
    g = torch.Generator().manual_seed(seed)
    z1, z2 = views(g, n, d)
    labels = torch.rand(n, generator=g, dtype=torch.float64) * 5
    if ties:
        labels = torch.round(labels)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    loss = cosent(z1, z2, labels, scale)
    extra = {"labels": labels.tolist()}
    return record(name, "cosent", {"scale": scale}, {"z1": z1, "z2": z2}, extra, loss)


def total_case(name, n, d, m, seed, rank, negatives, buffer, decay="official", beta=1.0, gamma=1.0,
               consistency="jsd", ties=False):
    g = torch.Generator().manual_seed(seed)
    z1, z2 = views(g, n, d)
    params = {"tau": 0.05, "tau_s": 0.05, "tau_t": 0.05, "beta": beta, "gamma": gamma, "rank": rank,
              "consistency": consistency, "decay": decay, "decay_width": 0.17}
    teacher = teacher_logits(g, z1, params["tau_t"], ties)
    perm = torch.randperm(n, generator=g)
    tensors = {"z1": z1, "z2": z2}
    extra = {"teacher": teacher.tolist(), "perm": perm.tolist()}
    z3 = frozen = vectors = missing = None
    if negatives:
        z3 = z1 + 0.8 * torch.randn(n, d, generator=g, dtype=torch.float64)
        frozen = torch.diag(cosines(z1, z3)) / params["tau"] + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
        tensors["negatives"] = z3
        extra["frozen"] = frozen.tolist()
    if buffer:
        vectors = torch.randn(n, m, d, generator=g, dtype=torch.float64)
        missing = torch.rand(n, m, generator=g) < 0.3
        extra["buffer"] = vectors.tolist()
        extra["missing"] = missing.tolist()
    for t in tensors.values():
        t.requires_grad_(True)
    loss = total(z1, z2, z3, frozen, vectors, missing, teacher, listmle_order(teacher, perm), params)
    return record(name, "total", params, tensors, extra, loss)


def check_listmle_is_plackett_luce():
    """ListMLE's row loss times n is -log of the Plackett-Luce probability of
    the teacher's order (up to the 1e-7 inside the log), and those
    probabilities over every order sum to 1."""
    g = torch.Generator().manual_seed(99)
    for n in [3, 4]:
        scores = torch.randn(1, n, generator=g, dtype=torch.float64)
        orders = list(itertools.permutations(range(n)))
        probs = [math.exp(-plackett_luce_nll(scores[0].tolist(), o)) for o in orders]
        assert abs(sum(probs) - 1) < 1e-12
        for o in orders:
            row = listmle(scores, torch.tensor([o])).item() * n
            assert abs(row - plackett_luce_nll(scores[0].tolist(), o)) < 1e-5, (n, o)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    check_listmle_is_plackett_luce()
    cases = []
    seed = 100
    for kind in ["listnet", "listmle"]:
        for n, ties in [(2, False), (8, False), (12, True), (64, False)]:
            seed += 1
            cases.append(rank_case(f"{kind}-n{n}{'-ties' if ties else ''}", kind, n, 6, seed, ties))
        seed += 1
        cases.append(rank_case(f"{kind}-n8-tau-s0.02-t0.1", kind, 8, 6, seed, tau_s=0.02, tau_t=0.1))
    for form in ["jsd", "rankcse"]:
        for n in [2, 8, 32]:
            seed += 1
            cases.append(jsd_case(f"jsd-{form}-n{n}", n, 6, seed, form))
    for n, ties in [(2, False), (8, False), (16, True)]:
        seed += 1
        cases.append(cosent_case(f"cosent-n{n}{'-ties' if ties else ''}", n, 6, seed, ties))
    for rank in ["listnet", "listmle"]:
        for negatives, buffer in [(False, False), (True, False), (False, True), (True, True)]:
            seed += 1
            tag = f"{rank}{'-llm' if negatives else ''}{'-buffer' if buffer else ''}"
            cases.append(total_case(f"total-{tag}-n8", 8, 6, 4, seed, rank, negatives, buffer))
    for decay in ["paper", "none"]:
        seed += 1
        cases.append(total_case(f"total-listmle-llm-buffer-{decay}-n8", 8, 6, 4, seed, "listmle", True, True, decay))
    seed += 1
    cases.append(total_case("total-rankcse-consistency-ties-n12", 12, 6, 3, seed, "listmle", True, True,
                            consistency="rankcse", ties=True))
    seed += 1
    cases.append(total_case("total-no-rank-no-consistency-n8", 8, 6, 4, seed, "listnet", True, True,
                            beta=0.0, gamma=0.0))
    seed += 1
    cases.append(total_case("total-weights-n8", 8, 6, 4, seed, "listnet", True, True, beta=0.5, gamma=2.0))
    seed += 1
    cases.append(total_case("total-listmle-llm-buffer-n64", 64, 8, 8, seed, "listmle", True, True))
    with open(args.out, "w") as f:
        json.dump({"cases": cases}, f)
        f.write("\n")


if __name__ == "__main__":
    main()
