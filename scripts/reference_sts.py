#!/usr/bin/env python3
"""PyTorch reference for gcse's encoder and STS evaluation.

Runs a Hugging Face checkpoint with transformers (eval mode, float32, CPU) and
writes two golden fixtures that gcse's tests compare against:

  <out>/<name>_embeddings.json  token ids and embeddings of a few sentences,
                                under every SimCSE pooler
  <out>/<name>_sts.json         the 7-task STS table (Spearman x 100) for the
                                poolers given with --table-poolers

The STS protocol follows SentEval as SimCSE uses it: STS12-16 with all subsets
concatenated ("all"), STS-B and SICK-R test splits, empty gold scores skipped,
sentences split on whitespace and re-joined with single spaces, cosine
similarity, scipy's Spearman.

Usage:
  python3 scripts/reference_sts.py --model models/all-MiniLM-L6-v2 \
      --data ../shared/data/senteval --out tests/fixtures --name minilm
"""

import argparse
import io
import json
import os

import numpy as np
import torch
import transformers
from scipy.stats import pearsonr, spearmanr
from transformers import AutoModel, AutoTokenizer

POOLERS = ["cls", "cls_before_pooler", "avg", "avg_first_last", "avg_top2"]

FIXTURE_SENTENCES = [
    "A man is playing a guitar.",
    "the quick brown fox jumps over the lazy dog",
    "Café naïve résumé: ünïcödé, Ωmega and 中文 characters!",
    "",
    "Two dogs are running through a field of snow, chasing a red ball "
    "that one of them dropped near the frozen lake behind the old wooden "
    "farmhouse while their owner watched from the porch with a cup of tea.",
    "It's 3.14 p.m. and numbers like 1,000,000 or e-mail@example.com appear.",
]

# Truncation fixture: token ids when sentences are cut to this many tokens.
SHORT_MAX_LEN = 16

STS_SUBSETS = {
    "sts12": ("STS12-en-test", ["MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"]),
    "sts13": ("STS13-en-test", ["FNWN", "headlines", "OnWN"]),
    "sts14": ("STS14-en-test", ["deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"]),
    "sts15": ("STS15-en-test", ["answers-forums", "answers-students", "belief", "headlines", "images"]),
    "sts16": ("STS16-en-test", ["answer-answer", "headlines", "plagiarism", "postediting", "question-question"]),
}


def load_semeval(data, task):
    """SentEval's STSEval.loadFile: tab-split pairs, empty gold skipped."""
    folder, subsets = STS_SUBSETS[task]
    a, b, gold = [], [], []
    for subset in subsets:
        base = os.path.join(data, "STS", folder)
        lines = io.open(os.path.join(base, f"STS.input.{subset}.txt"), encoding="utf8").read().splitlines()
        sent1, sent2 = zip(*[line.split("\t") for line in lines])
        raw = np.array(io.open(os.path.join(base, f"STS.gs.{subset}.txt"), encoding="utf8").read().splitlines())
        keep = raw != ""
        a += [" ".join(s.split()) for s, k in zip(sent1, keep) if k]
        b += [" ".join(s.split()) for s, k in zip(sent2, keep) if k]
        gold += [float(x) for x in raw[keep]]
    return a, b, gold


def load_columns(path, header, ca, cb, cs):
    """SentEval's STSBenchmark / SICK loaders: tab-separated columns."""
    a, b, gold = [], [], []
    with io.open(path, encoding="utf8") as f:
        for i, line in enumerate(f):
            if header and i == 0:
                continue
            text = line.strip().split("\t")
            a.append(" ".join(text[ca].split()))
            b.append(" ".join(text[cb].split()))
            gold.append(float(text[cs]))
    return a, b, gold


def load_task(data, task):
    if task in STS_SUBSETS:
        return load_semeval(data, task)
    if task == "stsb":
        return load_columns(os.path.join(data, "STS/STSBenchmark/sts-test.csv"), False, 5, 6, 4)
    if task == "sickr":
        return load_columns(os.path.join(data, "SICK/SICK_test_annotated.txt"), True, 1, 2, 3)
    raise ValueError(task)


class Encoder:
    def __init__(self, model_dir, max_len):
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
        self.max_len = max_len

    @torch.no_grad()
    def pooled(self, sentences, poolers, batch_size=64):
        """Embeddings of `sentences` under each pooler, in input order."""
        out = {p: [] for p in poolers}
        for start in range(0, len(sentences), batch_size):
            batch = sentences[start:start + batch_size]
            enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_len,
                                 return_tensors="pt")
            res = self.model(**enc, output_hidden_states=True, return_dict=True)
            mask = enc["attention_mask"].unsqueeze(-1).float()
            hidden = res.hidden_states
            last = res.last_hidden_state

            def avg(x):
                return (x * mask).sum(1) / mask.sum(1)

            for p in poolers:
                if p == "cls":
                    v = res.pooler_output
                elif p == "cls_before_pooler":
                    v = last[:, 0]
                elif p == "avg":
                    v = avg(last)
                elif p == "avg_first_last":
                    v = avg((hidden[0] + hidden[-1]) / 2.0)
                elif p == "avg_top2":
                    v = avg((hidden[-1] + hidden[-2]) / 2.0)
                out[p].append(v.numpy())
        return {p: np.concatenate(v) for p, v in out.items()}


def cosine(u, v):
    u = u.astype(np.float64)
    v = v.astype(np.float64)
    return (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default="../shared/data/senteval")
    ap.add_argument("--out", default="tests/fixtures")
    ap.add_argument("--name", default="minilm")
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--table-poolers", default="avg,cls_before_pooler")
    ap.add_argument("--skip-table", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    enc = Encoder(args.model, args.max_len)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}

    fixture = {
        "model": os.path.basename(os.path.normpath(args.model)),
        "max_len": args.max_len,
        "short_max_len": SHORT_MAX_LEN,
        "sentences": FIXTURE_SENTENCES,
        "token_ids": [enc.tokenizer(s, truncation=True, max_length=args.max_len)["input_ids"]
                      for s in FIXTURE_SENTENCES],
        "short_token_ids": [enc.tokenizer(s, truncation=True, max_length=SHORT_MAX_LEN)["input_ids"]
                            for s in FIXTURE_SENTENCES],
        "embeddings": {p: v.tolist() for p, v in enc.pooled(FIXTURE_SENTENCES, POOLERS).items()},
        "made_with": versions,
    }
    with open(os.path.join(args.out, f"{args.name}_embeddings.json"), "w") as f:
        json.dump(fixture, f)

    if args.skip_table:
        return
    poolers = args.table_poolers.split(",")
    tasks = ["sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr"]
    table = {p: {} for p in poolers}
    for task in tasks:
        a, b, gold = load_task(args.data, task)
        ea = enc.pooled(a, poolers)
        eb = enc.pooled(b, poolers)
        for p in poolers:
            scores = cosine(ea[p], eb[p])
            table[p][task] = {
                "spearman": 100 * spearmanr(scores, gold)[0],
                "pearson": 100 * pearsonr(scores, gold)[0],
                "pairs": len(gold),
            }
        print(task, {p: round(table[p][task]["spearman"], 2) for p in poolers}, len(gold), flush=True)
    for p in poolers:
        table[p]["average"] = float(np.mean([table[p][t]["spearman"] for t in tasks]))
    with open(os.path.join(args.out, f"{args.name}_sts.json"), "w") as f:
        json.dump({"model": fixture["model"], "max_len": args.max_len, "results": table,
                   "made_with": versions}, f, indent=1)


if __name__ == "__main__":
    main()
