#!/usr/bin/env python3
"""Checks that a model exported by gcse is used from Python unchanged.

Loads an exported folder (`gcse train`'s run_dir/best, or `gcse export`) with
sentence-transformers, embeds sentences, and compares with the embeddings
`gcse embed` wrote for the same sentences (JSONL with an "embedding" field):
the cosine of each pair of vectors must be at least 1 - 1e-4. Then scores
STS-B test with the sentence-transformers model (SentEval protocol, Spearman
x 100) and compares with the `gcse eval --json` results of the same folder.

Usage:
  gcse embed --model runs/quickstart/best --input S.txt --output gcse.jsonl
  gcse eval --model runs/quickstart/best --tasks stsb --json gcse_stsb.json
  python3 scripts/export_roundtrip.py --model runs/quickstart/best \
      --sentences S.txt --gcse-embeddings gcse.jsonl \
      --gcse-eval gcse_stsb.json --data ../shared/data/senteval
"""

import argparse
import json
import os
import sys

import numpy as np
from scipy.stats import spearmanr
from sentence_transformers import SentenceTransformer


def stsb_test(path):
    """(sentence A, sentence B, gold) of STS-B test, empty gold skipped."""
    rows = []
    with open(os.path.join(path, "STS/STSBenchmark/sts-test.csv"), encoding="utf-8") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 7 or not cols[4].strip():
                continue
            rows.append((" ".join(cols[5].split()), " ".join(cols[6].split()), float(cols[4])))
    return rows


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--sentences", required=True)
    parser.add_argument("--gcse-embeddings", required=True)
    parser.add_argument("--gcse-eval", required=True)
    parser.add_argument("--data", required=True)
    args = parser.parse_args()

    model = SentenceTransformer(args.model, device="cpu")
    print("sentence-transformers modules:", [type(m).__name__ for m in model])
    with open(args.sentences, encoding="utf-8") as f:
        sentences = [line.rstrip("\n") for line in f if line.strip()]
    with open(args.gcse_embeddings, encoding="utf-8") as f:
        ours = np.array([json.loads(line)["embedding"] for line in f], dtype=np.float64)
    theirs = model.encode(sentences, batch_size=64, convert_to_numpy=True).astype(np.float64)
    cosines = (unit(ours) * unit(theirs)).sum(axis=1)
    worst = float(cosines.min())
    print(f"embeddings: {len(sentences)} sentences, min cosine {worst:.7f}")

    rows = stsb_test(args.data)
    a = model.encode([r[0] for r in rows], batch_size=64, convert_to_numpy=True)
    b = model.encode([r[1] for r in rows], batch_size=64, convert_to_numpy=True)
    spearman = 100 * spearmanr((unit(a) * unit(b)).sum(axis=1), [r[2] for r in rows]).correlation
    with open(args.gcse_eval, encoding="utf-8") as f:
        report = json.load(f)
    gcse_score = next(s["spearman"] for s in report["results"]["scores"] if s["task"] == "stsb")
    print(f"STS-B test Spearman: sentence-transformers {spearman:.2f}, gcse {gcse_score:.2f}, "
          f"difference {abs(spearman - gcse_score):.3f}")
    ok = worst >= 1 - 1e-4 and abs(spearman - gcse_score) <= 0.05
    print("round trip:", "OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
