#!/usr/bin/env python3
"""PyTorch reference for gcse's cross-encoder and its pair losses.

1. A cross-encoder built from a BERT checkpoint with transformers'
   AutoModelForSequenceClassification (num_labels = 1), its fresh head
   replaced by one drawn here from a fixed seed (written into the fixture, so
   gcse builds the same model): token ids of each pair ([CLS] a [SEP] b [SEP],
   token types 0/1) and the logit of each pair, for real pairs (the first
   pairs of STS-B dev).
2. A few training steps of that model on those pairs, the way gcse's `cross`
   objective trains: each pair in both orders, binary cross-entropy with
   logits against the pair's score / 5, global gradient-norm clipping,
   AdamW, a linear schedule to 0 at the last step, dropout off. The loss of
   every step (before its update).
3. The pair losses in float64 on random inputs, with their gradients:
   binary cross-entropy with logits (soft targets), MSE of pair cosines
   against scores, CoSENT of pair cosines.

Usage:
  python3 scripts/reference_cross.py --model models/all-MiniLM-L6-v2 \
      --data ../shared/data/senteval --out tests/fixtures/cross_encoder.json
"""

import argparse
import csv
import json

import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    get_linear_schedule_with_warmup,
)


def stsb_dev(data, n):
    pairs = []
    with open(f"{data}/STS/STSBenchmark/sts-dev.csv", encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            pairs.append((row[5], row[6], float(row[4])))
            if len(pairs) == n:
                break
    return pairs


def build(model_dir, head_weight, head_bias):
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir,
        num_labels=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    ).float()
    with torch.no_grad():
        model.classifier.weight.copy_(head_weight.reshape(1, -1))
        model.classifier.bias.copy_(head_bias.reshape(1))
    return model


def cosent(cos, labels, scale):
    diff = scale * (cos[None, :] - cos[:, None])  # [p, q] = c_q - c_p
    mask = labels[:, None] > labels[None, :]
    terms = torch.cat([torch.zeros(1, dtype=cos.dtype), diff[mask]])
    return torch.logsumexp(terms, 0)


def loss_cases():
    g = torch.Generator().manual_seed(7)
    cases = []
    for n, d in [(4, 3), (9, 5)]:
        logits = (torch.randn(2 * n, generator=g, dtype=torch.float64) * 2).requires_grad_()
        targets = torch.rand(2 * n, generator=g, dtype=torch.float64)
        loss = F.binary_cross_entropy_with_logits(logits, targets)
        (grad,) = torch.autograd.grad(loss, logits)
        cases.append({
            "name": f"bce n={2 * n}", "loss_kind": "bce",
            "logits": logits.tolist(), "targets": targets.tolist(),
            "loss": loss.item(), "grad": grad.tolist(),
        })
        z = torch.randn(2 * n, d, generator=g, dtype=torch.float64).requires_grad_()
        scores = torch.rand(n, generator=g, dtype=torch.float64)
        scores[1] = scores[0]  # a tie, which CoSENT leaves out
        cos = F.cosine_similarity(z[:n], z[n:], dim=-1)
        for kind, loss in [
            ("mse", ((cos - scores) ** 2).mean()),
            ("cosent", cosent(cos, scores, 20.0)),
        ]:
            (grad,) = torch.autograd.grad(loss, z, retain_graph=True)
            cases.append({
                "name": f"{kind} n={n}", "loss_kind": kind, "scale": 20.0,
                "z": z.tolist(), "scores": scores.tolist(),
                "loss": loss.item(), "grad": grad.tolist(),
            })
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    args = parser.parse_args()

    torch.manual_seed(0)
    pairs = stsb_dev(args.data, args.pairs)
    a = [p[0] for p in pairs]
    b = [p[1] for p in pairs]
    targets = torch.tensor([p[2] / 5.0 for p in pairs])

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    hidden = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1).config.hidden_size
    g = torch.Generator().manual_seed(1234)
    head_weight = torch.randn(hidden, generator=g) * 0.05
    head_bias = torch.tensor(0.1)
    model = build(args.model, head_weight, head_bias)
    model.eval()

    encoded = tokenizer(a, b, truncation=True, max_length=args.max_len)
    batch = tokenizer(a, b, padding=True, truncation=True, max_length=args.max_len, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits.squeeze(-1)

    model.train()
    both = tokenizer(a + b, b + a, padding=True, truncation=True, max_length=args.max_len, return_tensors="pt")
    both_targets = torch.cat([targets, targets])
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, eps=1e-8, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, 0, args.steps)
    losses = []
    for _ in range(args.steps):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(**both).logits.squeeze(-1), both_targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())

    result = {
        "model": args.model.rstrip("/").split("/")[-1],
        "pairs": [{"a": x, "b": y, "score": s} for x, y, s in pairs],
        "head_weight": head_weight.tolist(),
        "head_bias": head_bias.item(),
        "max_len": args.max_len,
        "input_ids": encoded["input_ids"],
        "token_type_ids": encoded["token_type_ids"],
        "logits": logits.tolist(),
        "train": {
            "steps": args.steps, "lr": args.lr, "max_grad_norm": args.max_grad_norm,
            "adam_epsilon": 1e-8, "weight_decay": 0.0, "score_range": [0.0, 5.0],
            "losses": losses,
        },
        "losses": loss_cases(),
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(json.dumps({"logits": result["logits"][:4], "losses": losses}))


if __name__ == "__main__":
    main()
