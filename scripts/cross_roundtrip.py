#!/usr/bin/env python3
"""Checks that a cross-encoder exported by gcse is used from Python unchanged.

Loads the folder (a `cross` run's best model, `gcse export` of one, or a
distill-cycle stage's `best`) with sentence-transformers' CrossEncoder and
with transformers' AutoModelForSequenceClassification, scores pairs, and
compares with the scores `gcse score` wrote for the same pairs (JSONL
`{a, b, score}`, the sigmoid of the logit): the largest difference must be
under 1e-4. Prints the largest difference and the smallest agreement
(1 - |difference|).

Usage:
  gcse score --model runs/x/best --input pairs.jsonl --output gcse_scores.jsonl
  python3 scripts/cross_roundtrip.py --model runs/x/best --scores gcse_scores.jsonl
"""

import argparse
import json
import sys

import numpy as np
import torch
from sentence_transformers import CrossEncoder
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--scores", required=True)
    args = parser.parse_args()

    with open(args.scores, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    pairs = [(r["a"], r["b"]) for r in rows]
    ours = np.array([r["score"] for r in rows], dtype=np.float64)

    model = CrossEncoder(args.model, device="cpu")
    st = np.asarray(model.predict(pairs, batch_size=32), dtype=np.float64)

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    hf = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    with torch.no_grad():
        batch = tokenizer([p[0] for p in pairs], [p[1] for p in pairs],
                          padding=True, truncation=True, return_tensors="pt")
        hf_scores = torch.sigmoid(hf(**batch).logits.squeeze(-1)).double().numpy()

    result = {"pairs": len(pairs)}
    for name, theirs in [("sentence_transformers", st), ("transformers", hf_scores)]:
        worst = float(np.max(np.abs(theirs - ours)))
        result[name] = {"max_abs_difference": worst, "min_agreement": 1.0 - worst}
    print(json.dumps(result, indent=1))
    if any(result[k]["max_abs_difference"] >= 1e-4 for k in ["sentence_transformers", "transformers"]):
        sys.exit("scores differ by 1e-4 or more")


if __name__ == "__main__":
    main()
