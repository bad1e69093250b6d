#!/usr/bin/env python3
"""PyTorch reference values for gcse's contrastive losses.

For a few fixed embedding batches, computes in float64, with gradients with
respect to every embedding:
- unsupervised SimCSE's InfoNCE (cosine similarity / tau, cross-entropy with
  the positive on the diagonal, mean over rows) -> losses.json;
- GCSE's stage-2 loss with the Gaussian-decayed own hard negative, for each
  decay mode, transcribed from the paper (Eq. 12-13) and the authors' code
  (detached additive term where s <= s') -> gcse_losses.json.
tests/loss.rs compares gcse's losses against both.

Usage:
  python3 scripts/reference_losses.py --out-dir tests/fixtures
"""

import argparse
import json

import torch
import torch.nn.functional as F


def info_nce(z1, z2, tau):
    sim = F.cosine_similarity(z1.unsqueeze(1), z2.unsqueeze(0), dim=-1) / tau
    return F.cross_entropy(sim, torch.arange(z1.shape[0]))


def case(name, z1, z2, tau):
    z1 = z1.clone().double().requires_grad_(True)
    z2 = z2.clone().double().requires_grad_(True)
    loss = info_nce(z1, z2, tau)
    loss.backward()
    return {
        "name": name,
        "temperature": tau,
        "z1": z1.detach().tolist(),
        "z2": z2.detach().tolist(),
        "loss": loss.item(),
        "grad_z1": z1.grad.tolist(),
        "grad_z2": z2.grad.tolist(),
    }


def decayed_negatives(z1, z3, frozen, tau, mode, width):
    """The [z1 x z3] logits with the own hard negative's logit s_i replaced
    as each decay mode says."""
    neg = F.cosine_similarity(z1.unsqueeze(1), z3.unsqueeze(0), dim=-1) / tau
    s = torch.diag(neg)
    if mode == "official":
        # The authors' code: weights from detached logits, zero where s > s'.
        sd = s.detach()
        diff = sd - frozen
        w = torch.where(diff > 0, torch.zeros_like(sd), -sd * torch.exp(-(diff**2) / (2 * width**2)))
        neg = neg + torch.diag(w)
    elif mode == "paper":
        # Eq. 13 in logit units: G = s (1 - exp(-(s - s')^2 / (2 a^2))).
        g = s * (1 - torch.exp(-((s - frozen) ** 2) / (2 * width**2)))
        neg = neg + torch.diag(g - s)
    return neg


def gcse_loss(z1, z2, z3, frozen, tau, mode, width):
    """Cross-entropy over [z1 x z2 | z1 x z3] logits, target i, the own hard
    negative decayed (decayed_negatives)."""
    pos = F.cosine_similarity(z1.unsqueeze(1), z2.unsqueeze(0), dim=-1) / tau
    neg = decayed_negatives(z1, z3, frozen, tau, mode, width)
    logits = torch.cat([pos, neg], 1)
    return F.cross_entropy(logits, torch.arange(z1.shape[0]))


def gcse_case(name, z1, z2, z3, offsets, tau, mode, width):
    """`offsets` gives s'_i - s_i per row (None: s'_i = s_i exactly)."""
    z1, z2, z3 = (z.clone().double().requires_grad_(True) for z in (z1, z2, z3))
    with torch.no_grad():
        s = torch.diag(F.cosine_similarity(z1.unsqueeze(1), z3.unsqueeze(0), dim=-1) / tau)
    frozen = s.clone() if offsets is None else s + torch.tensor(offsets, dtype=torch.float64)
    loss = gcse_loss(z1, z2, z3, frozen, tau, mode, width)
    loss.backward()
    return {
        "name": f"{name} [{mode}]",
        "mode": mode,
        "width": width,
        "temperature": tau,
        "z1": z1.detach().tolist(),
        "z2": z2.detach().tolist(),
        "z3": z3.detach().tolist(),
        "frozen": frozen.tolist(),
        "student": s.tolist(),
        "loss": loss.item(),
        "grad_z1": z1.grad.tolist(),
        "grad_z2": z2.grad.tolist(),
        "grad_z3": z3.grad.tolist(),
    }


def gcse_cases():
    g = torch.Generator().manual_seed(11)
    base = torch.randn(5, 8, generator=g)
    z2 = base + 0.1 * torch.randn(5, 8, generator=g)
    z3 = base + 0.6 * torch.randn(5, 8, generator=g)
    # Rows whose cosine is exact in binary floating point ([1,0]·[3,4]/5 =
    # 0.6, [0,1]·[4,3]/5 = 0.6, ...), so that s = s' is an exact tie on both
    # sides and the official mode's `s <= s'` branch is taken for certain.
    e = torch.zeros(3, 8)
    e[0, 0], e[1, 1], e[2, 2] = 1.0, 1.0, 1.0
    tie = torch.zeros(3, 8)
    tie[0, :2] = torch.tensor([3.0, 4.0])
    tie[1, 1:3] = torch.tensor([4.0, 3.0])
    tie[2, 2:4] = torch.tensor([5.0, 12.0])
    e2 = e + 0.2 * torch.randn(3, 8, generator=g)
    settings = [
        ("mixed signs: s < s', s > s', tiny and large gaps", base, z2, z3, [0.05, -0.05, 3.0, -3.0, 1e-4], 0.05, 0.17),
        ("every s > s' (official: no decay)", base, z2, z3, [-0.3] * 5, 0.05, 0.17),
        ("every s < s', gap near the width", base, z2, z3, [0.17, 0.1, 0.25, 0.4, 0.02], 0.05, 0.17),
        ("exact ties s = s'", e, e2, tie, None, 0.05, 0.17),
        ("batch of one, s < s'", base[:1], z2[:1], z3[:1], [0.08], 0.05, 0.17),
        ("batch of one, s > s'", base[1:2], z2[1:2], z3[1:2], [-0.08], 0.05, 0.17),
        ("paper width sigma/tau = 0.2, tau 0.1", base, z2, z3, [0.1, -0.1, 0.5, -0.5, 1e-6], 0.1, 0.2),
    ]
    return [
        gcse_case(name, a, b, c, off, tau, mode, width)
        for (name, a, b, c, off, tau, width) in settings
        for mode in ("official", "paper", "none")
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(7)
    base = torch.randn(6, 8, generator=g)
    cases = [
        case("random views, tau 0.05", torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g), 0.05),
        case("close views, tau 0.05", base, base + 0.05 * torch.randn(6, 8, generator=g), 0.05),
        case("close views, tau 1", base, base + 0.3 * torch.randn(6, 8, generator=g), 1.0),
        case("scaled rows (cosine ignores length)", 10.0 * base[:3], 0.1 * base[:3].flip(0), 0.1),
        case("batch of one", base[:1], base[1:2], 0.05),
    ]
    for name, cases in (("losses.json", cases), ("gcse_losses.json", gcse_cases())):
        with open(f"{args.out_dir}/{name}", "w") as f:
            json.dump({"cases": cases, "torch": torch.__version__}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
