#!/usr/bin/env python3
"""Evaluation sets beyond STS, built from the local data (standard library
only), in the formats `gcse eval` reads:

- snli-rerank-{dev,test}.jsonl: MTEB reranking JSONL. Each SNLI premise is a
  query; its entailed hypotheses are positives, its contradicted and neutral
  ones negatives.
- snli-retrieval-{dev,test}/: BEIR layout. Queries are the premises with an
  entailed hypothesis; the corpus is every distinct hypothesis of the split;
  qrels mark each premise's entailed hypotheses.
- sick-pairclass-{dev,test}.jsonl: SICK pairs labelled 1 for entailment, 0
  for neutral or contradiction (MTEB-style pair classification).
- stsb-pairs-dev.jsonl: STS-B dev as a user's pair-score file ({a, b,
  score}), which must score as the built-in stsb-dev task does.

    python3 scripts/build_eval_sets.py [OUT_DIR]
        [default OUT_DIR: $GCSE_CACHE/eval-sets, else ~/.cache/gcse/eval-sets]

Reads $GCSE_DATA (default ../shared/data beside the repository).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def data_root():
    if os.environ.get("GCSE_DATA"):
        return os.environ["GCSE_DATA"]
    return os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data"))


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def jsonl(rows):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def clean(s):
    return " ".join(s.split())


def snli(root, split):
    base = os.path.join(root, "corpus", "snli")
    columns = []
    for name in ("s1", "s2", "labels"):
        with open(os.path.join(base, f"{name}.{split}"), encoding="utf-8") as f:
            columns.append([clean(l) for l in f])
    premises = {}
    for premise, hypothesis, label in zip(*columns):
        if not premise or not hypothesis or label not in ("entailment", "neutral", "contradiction"):
            continue
        entry = premises.setdefault(premise, {"positive": [], "negative": []})
        side = "positive" if label == "entailment" else "negative"
        if hypothesis not in entry[side]:
            entry[side].append(hypothesis)
    return premises


def rerank(premises):
    return jsonl({"query": p, **e} for p, e in premises.items())


def retrieval(premises, out):
    hypotheses = {}
    for e in premises.values():
        for h in e["positive"] + e["negative"]:
            hypotheses.setdefault(h, f"h{len(hypotheses)}")
    queries, qrels = [], []
    for p, e in premises.items():
        if e["positive"]:
            qid = f"p{len(queries)}"
            queries.append({"_id": qid, "text": p})
            qrels += [f"{qid}\t{hypotheses[h]}\t1\n" for h in e["positive"]]
    os.makedirs(os.path.join(out, "qrels"), exist_ok=True)
    write(os.path.join(out, "corpus.jsonl"), jsonl({"_id": i, "title": "", "text": h} for h, i in hypotheses.items()))
    write(os.path.join(out, "queries.jsonl"), jsonl(queries))
    write(os.path.join(out, "qrels", "test.tsv"), "query-id\tcorpus-id\tscore\n" + "".join(qrels))
    return len(queries), len(hypotheses)


def sick(root, name):
    rows = []
    with open(os.path.join(root, "senteval", "SICK", name), encoding="utf-8") as f:
        header = next(f).rstrip("\n").split("\t")
        a, b, label = header.index("sentence_A"), header.index("sentence_B"), header.index("entailment_judgment")
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) > label:
                rows.append({"sentence1": clean(fields[a]), "sentence2": clean(fields[b]),
                             "label": int(fields[label] == "ENTAILMENT")})
    return rows


def stsb_dev(root):
    rows = []
    with open(os.path.join(root, "senteval", "STS", "STSBenchmark", "sts-dev.csv"), encoding="utf-8") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) >= 7 and fields[4].strip():
                rows.append({"a": clean(fields[5]), "b": clean(fields[6]), "score": float(fields[4])})
    return rows


def main():
    cache = os.environ.get("GCSE_CACHE") or os.path.expanduser("~/.cache/gcse")
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(cache, "eval-sets")
    os.makedirs(out, exist_ok=True)
    root = data_root()
    for split in ("dev", "test"):
        premises = snli(root, split)
        write(os.path.join(out, f"snli-rerank-{split}.jsonl"), rerank(premises))
        queries, docs = retrieval(premises, os.path.join(out, f"snli-retrieval-{split}"))
        print(f"snli {split}: {len(premises)} reranking queries; retrieval {queries} queries, {docs} documents")
    for split, name in (("dev", "SICK_trial.txt"), ("test", "SICK_test_annotated.txt")):
        rows = sick(root, name)
        write(os.path.join(out, f"sick-pairclass-{split}.jsonl"), jsonl(rows))
        print(f"sick {split}: {len(rows)} pairs, {sum(r['label'] for r in rows)} entailment")
    rows = stsb_dev(root)
    write(os.path.join(out, "stsb-pairs-dev.jsonl"), jsonl(rows))
    print(f"stsb dev: {len(rows)} pairs")
    print(f"in {out}")


if __name__ == "__main__":
    main()
