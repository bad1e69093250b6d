#!/usr/bin/env python3
"""Golden values for gcse's evaluators: sentence-transformers' own evaluators
(RerankingEvaluator, InformationRetrievalEvaluator,
BinaryClassificationEvaluator, EmbeddingSimilarityEvaluator) run on given
embeddings, through a stand-in model that returns them for their sentences.

    python scripts/reference_eval.py fixtures      # tests/fixtures/eval_metrics.json
    python scripts/reference_eval.py real DIR GCSE MODEL
        # the sets of scripts/build_eval_sets.py in DIR, embedded by `gcse
        # embed` (binary GCSE, model MODEL), scored by sentence-transformers
        # and by `gcse eval` on the same vectors: prints both, fails beyond
        # 1e-6, and writes sentence-transformers' values to
        # tests/fixtures/minilm_eval_sets.json ({"model", "sets": {file:
        # {metric: value}}}) for tests/sts_parity.rs

Fixture layout: {"versions": {...}, "cases": [{"name", "family" (rerank,
retrieval, pairclass, pairs), "files": {relative path: file text}, "task"
(the task's path under the case's folder), "vectors": {sentence: [..]},
"metrics": {gcse metric name: value as sentence-transformers gives it, a
fraction where gcse's tables say x100}}]}. Ties are built in: repeated
vectors under different sentences give equal scores.

Needs: sentence-transformers (with torch, scikit-learn, scipy), numpy.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import sentence_transformers
import sklearn
from sentence_transformers.util import cos_sim
from sentence_transformers.evaluation import (
    BinaryClassificationEvaluator,
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
    RerankingEvaluator,
)

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "tests", "fixtures", "eval_metrics.json")


class CardData:
    def set_evaluation_metrics(self, *args, **kwargs):
        pass


class GivenVectors:
    """Stands in for a SentenceTransformer: each sentence's vector from a table."""

    similarity_fn_name = "cosine"

    def __init__(self, vectors):
        self.vectors = vectors
        self.model_card_data = CardData()

    def encode(self, sentences, convert_to_tensor=False, convert_to_numpy=True, **kwargs):
        if isinstance(sentences, str):
            sentences = [sentences]
        # gcse holds vectors in f32: score the same values.
        rows = np.array([self.vectors[s] for s in sentences], dtype=np.float32).astype(np.float64)
        return torch.from_numpy(rows) if convert_to_tensor else rows

    encode_query = encode
    encode_document = encode

    @staticmethod
    def similarity(a, b):
        return cos_sim(a, b)


def reranking(samples, vectors):
    # RerankingEvaluator orders candidates with torch.argsort, whose default
    # sort is not stable: tied candidates come out in an order of torch's
    # choosing (rerank_wide: 1 query of 20 differs). gcse keeps input order
    # (positives first); the reference is the evaluator with the sort made
    # stable.
    argsort = torch.argsort
    torch.argsort = lambda x, *args, **kwargs: argsort(x, *args, stable=True, **kwargs)
    try:
        scores = RerankingEvaluator(samples, at_k=10, show_progress_bar=False)(GivenVectors(vectors))
    finally:
        torch.argsort = argsort
    return {"map": scores["map"], "mrr_at_10": scores["mrr@10"], "ndcg_at_10": scores["ndcg@10"]}


def exact_cos_sim(a, b):
    """Cosine similarity with each score summed on its own: equal vectors
    score exactly equal. (A matrix product may round two equal columns
    differently, so that duplicate documents tie or not by chance: on the
    SNLI retrieval set, MAP@100 moves by 4e-6 between the two.)"""
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    return (a[:, None, :] * b[None, :, :]).sum(-1)


def retrieval(queries, corpus, relevant, vectors, chunk=7):
    evaluator = InformationRetrievalEvaluator(
        queries,
        corpus,
        relevant,
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[1],
        precision_recall_at_k=[1, 10, 100],
        map_at_k=[100],
        show_progress_bar=False,
        corpus_chunk_size=chunk,
        score_functions={"cosine": exact_cos_sim},
    )
    scores = evaluator.compute_all_metrics(GivenVectors(vectors))["cosine"]
    return {
        "ndcg_at_10": scores["ndcg@k"][10],
        "mrr_at_10": scores["mrr@k"][10],
        "recall_at_1": scores["recall@k"][1],
        "recall_at_10": scores["recall@k"][10],
        "recall_at_100": scores["recall@k"][100],
        "map_at_100": scores["map@k"][100],
    }


def pair_classification(a, b, labels, vectors):
    evaluator = BinaryClassificationEvaluator(a, b, labels, show_progress_bar=False, similarity_fn_names=["cosine"])
    scores = evaluator.compute_metrics(GivenVectors(vectors))["cosine"]
    return {
        "ap": scores["ap"],
        "f1": scores["f1"],
        "accuracy": scores["accuracy"],
        "precision": scores["precision"],
        "recall": scores["recall"],
        "f1_threshold": scores["f1_threshold"],
        "accuracy_threshold": scores["accuracy_threshold"],
    }


def pair_scores(a, b, gold, vectors):
    evaluator = EmbeddingSimilarityEvaluator(a, b, gold, similarity_fn_names=["cosine"], show_progress_bar=False)
    scores = evaluator(GivenVectors(vectors))
    return {"spearman": scores["spearman_cosine"], "pearson": scores["pearson_cosine"]}


def jsonl(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def vectors_with_ties(rng, names, dim, repeats):
    """Random vectors; each (copy, original) in `repeats` shares a vector."""
    table = {n: [float(x) for x in rng.standard_normal(dim).astype(np.float32)] for n in names}
    for copy, original in repeats:
        table[copy] = list(table[original])
    return {n: [round(x, 7) for x in v] for n, v in table.items()}


def rerank_case(rng, name, queries, candidates, dim, tie_pairs):
    samples = []
    names = []
    for q in range(queries):
        pos = [f"q{q}p{i}" for i in range(rng.integers(1, 4))]
        neg = [f"q{q}n{i}" for i in range(candidates - len(pos))]
        samples.append({"query": f"q{q}", "positive": pos, "negative": neg})
        names += [f"q{q}"] + pos + neg
    repeats = []
    for q in range(min(tie_pairs, queries)):
        # A negative as close to the query as a positive: a tie across labels.
        repeats.append((samples[q]["negative"][0], samples[q]["positive"][0]))
    vectors = vectors_with_ties(rng, names, dim, repeats)
    # A query with no negative: skipped by both.
    samples.append({"query": "lonely", "positive": ["q0p0"], "negative": []})
    vectors["lonely"] = vectors["q0"]
    return {
        "name": name,
        "family": "rerank",
        "files": {"rerank.jsonl": jsonl(samples)},
        "task": "rerank.jsonl",
        "vectors": vectors,
        "metrics": reranking([s for s in samples if s["negative"]], vectors),
    }


def retrieval_case(rng, name, queries, docs, dim, duplicates):
    corpus = {f"d{i:03d}": f"doc {i}" for i in range(docs)}
    query_texts = {f"q{i}": f"query {i}" for i in range(queries)}
    relevant = {}
    for q in query_texts:
        picks = rng.choice(docs, size=int(rng.integers(1, 4)), replace=False)
        relevant[q] = {f"d{i:03d}" for i in picks}
    # Queries with no judgement are left out by both.
    query_texts["unjudged"] = "a query nobody judged"
    names = list(corpus.values()) + list(query_texts.values())
    vectors = vectors_with_ties(rng, names, dim, [])
    # Documents repeating another's text: equal scores, one relevant, one not.
    ids = list(corpus)
    for i in range(duplicates):
        original = ids[i]
        copy = ids[-1 - i]
        corpus[copy] = corpus[original]
    # Queries close to a relevant document, so ties land inside the top 10.
    for q, rel in relevant.items():
        anchor = np.array(vectors[corpus[sorted(rel)[0]]])
        noise = rng.standard_normal(dim) * 1.2
        vectors[query_texts[q]] = [round(float(x), 7) for x in (anchor + noise).astype(np.float32)]
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t1\n" for q, rel in relevant.items() for d in sorted(rel)
    ) + "q0\td999\t0\n"
    files = {
        "beir/corpus.jsonl": jsonl({"_id": i, "title": "", "text": t} for i, t in corpus.items()),
        "beir/queries.jsonl": jsonl({"_id": q, "text": t} for q, t in query_texts.items()),
        "beir/qrels/test.tsv": qrels,
    }
    judged = {q: t for q, t in query_texts.items() if q in relevant}
    return {
        "name": name,
        "family": "retrieval",
        "files": files,
        "task": "beir",
        "vectors": {t: v for t, v in vectors.items() if t in set(corpus.values()) | set(query_texts.values())},
        "metrics": retrieval(judged, corpus, relevant, vectors),
    }


def pairs_case(rng, name, pairs, dim, family):
    a = [f"a{i}" for i in range(pairs)]
    b = [f"b{i}" for i in range(pairs)]
    repeats = [(f"a{i}", "a0") for i in range(1, 4)] + [(f"b{i}", "b0") for i in range(1, 4)]
    vectors = vectors_with_ties(rng, a + b, dim, repeats)
    if family == "pairclass":
        cos = [np.dot(vectors[x], vectors[y]) / np.linalg.norm(vectors[x]) / np.linalg.norm(vectors[y]) for x, y in zip(a, b)]
        labels = [int(c + rng.normal(0, 0.2) > 0.0) for c in cos]
        # The tied pairs 0-3 disagree in label.
        labels[0], labels[1], labels[2], labels[3] = 1, 0, 1, 0
        rows = [{"sentence1": x, "sentence2": y, "label": l} for x, y, l in zip(a, b, labels)]
        return {
            "name": name,
            "family": "pairclass",
            "files": {"pairs.jsonl": jsonl(rows)},
            "task": "pairs.jsonl",
            "vectors": vectors,
            "metrics": pair_classification(a, b, labels, vectors),
        }
    gold = [float(rng.integers(0, 6)) for _ in range(pairs)]
    tsv = "sentence1\tsentence2\tscore\n" + "".join(f"{x}\t{y}\t{g}\n" for x, y, g in zip(a, b, gold))
    return {
        "name": name,
        "family": "pairs",
        "files": {"pairs.tsv": tsv},
        "task": "pairs.tsv",
        "vectors": vectors,
        "metrics": pair_scores(a, b, gold, vectors),
    }


def fixtures():
    rng = np.random.default_rng(23)
    cases = [
        rerank_case(rng, "rerank_small_ties", 6, 8, 5, 3),
        rerank_case(rng, "rerank_wide", 20, 30, 16, 4),
        retrieval_case(rng, "retrieval_chunks_and_ties", 12, 40, 6, 6),
        retrieval_case(rng, "retrieval_over_100_docs", 15, 160, 8, 10),
        pairs_case(rng, "pairclass_ties", 40, 6, "pairclass"),
        pairs_case(rng, "pairclass_many", 300, 12, "pairclass"),
        pairs_case(rng, "pairs_tsv_ties", 60, 6, "pairs"),
    ]
    out = {
        "versions": {
            "sentence_transformers": sentence_transformers.__version__,
            "torch": torch.__version__,
            "sklearn": sklearn.__version__,
        },
        "cases": cases,
    }
    with open(FIXTURE, "w") as f:
        json.dump(out, f)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {FIXTURE}")


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def real(directory, gcse, model):
    """The dev sets of build_eval_sets.py, as tests/sts_parity.rs evaluates
    them: one `gcse eval` of all four tasks, and `gcse embed` of the same
    distinct sentences in the same order and batches, so both score the
    same vectors."""
    tasks = []
    sentences = []
    path = os.path.join(directory, "snli-rerank-dev.jsonl")
    samples = read_jsonl(path)
    kept = [s for s in samples if s["positive"] and s["negative"]]
    sentences += [s for x in kept for s in [x["query"]] + x["positive"] + x["negative"]]
    tasks.append((f"rerank:{path}", lambda v: reranking(kept, v)))

    path = os.path.join(directory, "snli-retrieval-dev")
    corpus = {r["_id"]: r["text"] for r in read_jsonl(os.path.join(path, "corpus.jsonl"))}
    queries = {r["_id"]: r["text"] for r in read_jsonl(os.path.join(path, "queries.jsonl"))}
    relevant = {}
    with open(os.path.join(path, "qrels", "test.tsv")) as f:
        next(f)
        for line in f:
            q, d, s = line.rstrip("\n").split("\t")
            if float(s) > 0:
                relevant.setdefault(q, set()).add(d)
    judged = {q: t for q, t in queries.items() if q in relevant}
    sentences += list(judged.values()) + list(corpus.values())
    tasks.append((f"retrieval:{path}", lambda v: retrieval(judged, corpus, relevant, v, chunk=64)))

    path = os.path.join(directory, "sick-pairclass-dev.jsonl")
    rows = read_jsonl(path)
    a1, b1, labels = [r["sentence1"] for r in rows], [r["sentence2"] for r in rows], [r["label"] for r in rows]
    sentences += a1 + b1
    tasks.append((f"pairclass:{path}", lambda v: pair_classification(a1, b1, labels, v)))

    path = os.path.join(directory, "stsb-pairs-dev.jsonl")
    rows = read_jsonl(path)
    a2, b2, gold = [r["a"] for r in rows], [r["b"] for r in rows], [r["score"] for r in rows]
    sentences += a2 + b2
    tasks.append((f"pairs:{path}", lambda v: pair_scores(a2, b2, gold, v)))

    worst = 0.0
    golden = {}
    with tempfile.TemporaryDirectory() as tmp:
        # gcse eval embeds each distinct sentence once, in first-seen order,
        # in batches of 64: embed the same list the same way.
        distinct = list(dict.fromkeys(sentences))
        listing = os.path.join(tmp, "sentences.jsonl")
        with open(listing, "w") as f:
            f.write(jsonl({"text": s} for s in distinct))
        npy = os.path.join(tmp, "vectors.npy")
        common = ["--model", model, "--backend", "cpu", "--batch-size", "64"]
        subprocess.run([gcse, "embed", *common, "--input", listing, "--output", npy], check=True)
        rows = np.load(npy)
        assert len(rows) == len(distinct), (len(rows), len(distinct))
        vectors = {s: [float(x) for x in row] for s, row in zip(distinct, rows)}
        out = os.path.join(tmp, "results.json")
        subprocess.run([gcse, "eval", *common, "--tasks", ",".join(t for t, _ in tasks), "--json", out], check=True)
        with open(out) as f:
            results = {s["task"]: s for s in json.load(f)["results"]["scores"]}
        for task, reference in tasks:
            theirs = reference(vectors)
            golden[os.path.basename(task.split(":", 1)[1])] = theirs
            ours = results[task]
            print(task)
            for key, value in theirs.items():
                mine = ours[key] / (1 if key.endswith("threshold") else 100)
                worst = max(worst, abs(mine - value))
                print(f"  {key:20} gcse {mine:.9f}  sentence-transformers {value:.9f}  |diff| {abs(mine - value):.1e}")
    print(f"largest difference {worst:.1e}")
    if worst > 1e-6:
        sys.exit(1)
    path = os.path.join(HERE, "..", "tests", "fixtures", "minilm_eval_sets.json")
    with open(path, "w") as f:
        json.dump({"model": os.path.basename(os.path.normpath(model)), "sets": golden}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["fixtures"]:
        fixtures()
    elif sys.argv[1:2] == ["real"] and len(sys.argv) == 5:
        real(*sys.argv[2:])
    else:
        print(__doc__)
        sys.exit(2)
