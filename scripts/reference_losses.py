#!/usr/bin/env python3
"""PyTorch reference values for gcse's contrastive losses.

For a few fixed embedding batches, computes unsupervised SimCSE's InfoNCE
(cosine similarity / tau, cross-entropy with the positive on the diagonal,
mean over rows) and its gradients with respect to both views, in float64, and
writes them as a golden fixture that tests/loss.rs compares against.

Usage:
  python3 scripts/reference_losses.py --out tests/fixtures/losses.json
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
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
    with open(args.out, "w") as f:
        json.dump({"cases": cases, "torch": torch.__version__}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
