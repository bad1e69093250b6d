#!/usr/bin/env python3
"""PyTorch reference for gcse's stage-1 training step (unsupervised SimCSE).

Takes the same initial weights and the same batch as the parity test in
tests/train.rs and runs a few optimizer steps the way the SimCSE code does
with Hugging Face's Trainer: the [CLS] state through the checkpoint's pooler
(dense + tanh), each sentence encoded twice, InfoNCE over cosine / tau with the
positives on the diagonal, global gradient-norm clipping, AdamW, and a linear
schedule (warm-up, then decay to 0 at the last step). Dropout is off, so the
two views are equal and the run is deterministic.

Writes <out>, a JSON file with the settings and the loss of every step (the
loss is computed before that step's update).

Usage:
  python3 scripts/reference_train.py --model models/all-MiniLM-L6-v2 \
      --sentences tests/fixtures/train_sentences.txt \
      --out tests/fixtures/minilm_train_steps.json
"""

import argparse
import json

import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--sentences", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--max-len", type=int, default=32)
    # With equal views and tau = 0.05 the loss is ~1e-3 from the first step;
    # tau = 0.5 keeps it near 1-2 and the gradient norm above the clip.
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    args = parser.parse_args()

    torch.manual_seed(0)
    with open(args.sentences, encoding="utf-8") as f:
        sentences = [line.strip() for line in f if line.strip()]

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(
        args.model,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        add_pooling_layer=True,
        attn_implementation="eager",
    ).float()
    model.train()

    batch = tokenizer(
        sentences + sentences,
        padding=True,
        truncation=True,
        max_length=args.max_len,
        return_tensors="pt",
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, eps=1e-8, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, args.warmup, args.steps)

    n = len(sentences)
    losses, lrs, norms = [], [], []
    for _ in range(args.steps):
        optimizer.zero_grad()
        z = model(**batch).pooler_output
        z1, z2 = z[:n], z[n:]
        sim = F.cosine_similarity(z1.unsqueeze(1), z2.unsqueeze(0), dim=-1) / args.temperature
        loss = F.cross_entropy(sim, torch.arange(n))
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        lrs.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        norms.append(norm.item())

    result = {
        "model": args.model.rstrip("/").split("/")[-1],
        "sentences": args.sentences,
        "steps": args.steps,
        "lr": args.lr,
        "warmup_steps": args.warmup,
        "max_len": args.max_len,
        "temperature": args.temperature,
        "max_grad_norm": args.max_grad_norm,
        "adam_epsilon": 1e-8,
        "weight_decay": 0.0,
        "losses": losses,
        "lrs": lrs,
        "grad_norms": norms,
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(json.dumps({"losses": losses, "grad_norms": norms, "lrs": lrs}))


if __name__ == "__main__":
    main()
