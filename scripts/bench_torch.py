#!/usr/bin/env python3
"""The workloads of `gcse bench`, in PyTorch + Hugging Face transformers.

train: one unsupervised SimCSE step on `batch` random sentences of exactly
`seq_len` tokens (ids in [1000, vocab), no padding), each encoded twice with
dropout in one forward pass, `cls` pooling through the pooler's dense+tanh,
InfoNCE on cosine / 0.05, backward, AdamW (lr 3e-5, eps 1e-8, no weight
decay), the loss read back. embed: one forward pass in inference mode, the
[CLS] vectors of the last layer copied to the host. The inputs are made once
and reused; each step is timed from its start to its result on the host.

Variants: eager (default, strict f32 matrix products), tf32 (f32 with the
matrix products on TF32 tensor cores, as gcse's CUDA backend may choose),
bf16 (autocast to bfloat16 over f32 weights: mixed precision, as
`gcse bench --precision bf16-mixed`), f16 (autocast to float16 with
GradScaler's loss scaling, as `--precision f16-mixed`), bf16-pure
(weights, activations, gradients and AdamW state all bfloat16, as
`gcse bench --precision bf16` computes), compile (torch.compile of the
model). The JSON written has the same fields as
`gcse bench --json`; `--compare gcse.json` prints the ratio of the two.

Usage:
  python3 scripts/bench_torch.py train --model bert-base --batch-size 64 \
      --seq-len 32 --steps 20 --warmup 3 --device cpu --json torch.json \
      --compare gcse.json
"""

import argparse
import json
import math
import os
import resource
import statistics
import time

import torch
import torch.nn.functional as F
import transformers

PRESETS = {"bert-base": (768, 12, 3072), "minilm-l6": (384, 6, 1536)}


def build(model, attn):
    if model in PRESETS:
        hidden, layers, intermediate = PRESETS[model]
        config = transformers.BertConfig(
            vocab_size=30522,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=12,
            intermediate_size=intermediate,
            hidden_act="gelu",
            hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1,
            max_position_embeddings=512,
            type_vocab_size=2,
            layer_norm_eps=1e-12,
            attn_implementation=attn,
        )
        return transformers.BertModel(config, add_pooling_layer=True)
    return transformers.AutoModel.from_pretrained(model, attn_implementation=attn)


def forward_flops(config, rows, seq):
    """Matrix-product FLOPs a cls-pooled forward pass needs, as gcse's
    bench::flops counts them: the last layer only at position 0 beyond its
    keys and values (transformers computes it at every position anyway)."""
    d, f, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_layer = 2 * seq * (4 * d * d + 2 * d * f) + 2 * 2 * seq * seq * d
    last = 2 * seq * 2 * d * d + 2 * (2 * d * d + 2 * d * f) + 2 * 2 * seq * d
    return rows * ((layers - 1) * per_layer + last + 2 * d * d)


def summary(times):
    s = sorted(times)
    rank = lambda q: s[min(max(math.ceil(q * len(s)), 1), len(s)) - 1]
    return {"median": statistics.median(s), "p10": rank(0.1), "p90": rank(0.9), "min": s[0], "max": s[-1]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workload", choices=["train", "embed"])
    p.add_argument("--model", default="bert-base")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--variant", choices=["eager", "tf32", "bf16", "f16", "bf16-pure", "compile"], default="eager")
    p.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa",
                   help="transformers' attention implementation (its default is sdpa)")
    p.add_argument("--peak-tflops", type=float)
    p.add_argument("--json")
    p.add_argument("--compare", help="a `gcse bench --json` file of the same workload")
    a = p.parse_args()

    torch.manual_seed(42)
    device = torch.device(a.device)
    if a.variant == "tf32":
        torch.backends.cuda.matmul.allow_tf32 = True
    model = build(a.model, a.attn).to(device)
    if a.variant == "bf16-pure":
        model = model.to(torch.bfloat16)
    config = model.config
    n = a.batch_size
    ids = torch.randint(1000, config.vocab_size, (n, a.seq_len), device=device)
    run = torch.compile(model) if a.variant == "compile" else model
    half = {"bf16": torch.bfloat16, "f16": torch.float16}.get(a.variant)
    autocast = torch.autocast(device.type, dtype=half or torch.bfloat16, enabled=half is not None)
    scaler = torch.amp.GradScaler(device.type, enabled=a.variant == "f16")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    if a.workload == "train":
        ids = ids.repeat(2, 1)
        model.train()
        optim = torch.optim.AdamW(model.parameters(), lr=3e-5, eps=1e-8, weight_decay=0.0)
        labels = torch.arange(n, device=device)

        def step():
            with autocast:
                z = run(input_ids=ids, attention_mask=torch.ones_like(ids),
                        token_type_ids=torch.zeros_like(ids)).pooler_output
                z1, z2 = z[:n].float(), z[n:].float()
                sim = F.cosine_similarity(z1.unsqueeze(1), z2.unsqueeze(0), dim=-1) / 0.05
                loss = F.cross_entropy(sim, labels)
            scaler.scale(loss).backward()
            scaler.step(optim)
            scaler.update()
            optim.zero_grad(set_to_none=True)
            return loss.item()

        flops = 3 * (forward_flops(config, 2 * n, a.seq_len) + 2 * n * n * config.hidden_size)
    else:
        model.eval()

        def step():
            with torch.inference_mode(), autocast:
                out = run(input_ids=ids, attention_mask=torch.ones_like(ids),
                          token_type_ids=torch.zeros_like(ids)).last_hidden_state[:, 0]
                return out.float().cpu()

        flops = forward_flops(config, n, a.seq_len)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(a.warmup + a.steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)

    s = summary(times[a.warmup:])
    achieved = flops / s["median"] / 1e12
    if device.type == "cuda":
        backend = f"cuda ({torch.cuda.get_device_name(device)})"
    else:
        backend = f"cpu ({torch.get_num_threads()} threads)"
    report = {
        "tool": f"pytorch {torch.__version__} {a.variant} ({a.attn} attention)",
        "workload": a.workload,
        "model": a.model,
        "backend": backend,
        "precision": {"bf16": "bf16 autocast", "f16": "f16 autocast", "bf16-pure": "bf16", "tf32": "f32 (tf32 matmul)"}.get(a.variant, "f32"),
        "batch": n,
        "seq_len": a.seq_len,
        "warmup": a.warmup,
        "steps": a.steps,
        "first_step": times[0],
        "step_seconds": s,
        "sentences_per_second": n / s["median"],
        "tokens_per_second": n * a.seq_len / s["median"],
        "flops_per_step": flops,
        "achieved_tflops": achieved,
        "peak_tflops": a.peak_tflops,
        "mfu": achieved / a.peak_tflops if a.peak_tflops else None,
        "peak_host_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_device_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
    }
    print(f"{report['tool']} {a.workload} {a.model}: {backend}, batch {n} x {a.seq_len} tokens, {report['precision']}")
    print(f"  step {s['median'] * 1e3:.1f} ms median (p10 {s['p10'] * 1e3:.1f}, p90 {s['p90'] * 1e3:.1f}, "
          f"min {s['min'] * 1e3:.1f}, max {s['max'] * 1e3:.1f}; {a.steps} steps after {a.warmup} warm-up, "
          f"the first {times[0]:.2f} s)")
    mfu = f" ({report['mfu'] * 100:.1f}% MFU)" if report["mfu"] else ""
    print(f"  {report['sentences_per_second']:.1f} sentences/s, {report['tokens_per_second']:.0f} tokens/s, "
          f"{achieved:.3f} TFLOP/s{mfu}, peak host memory {report['peak_host_bytes'] / 2**30:.2f} GiB")
    if a.json:
        tmp = f"{a.json}.tmp.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=2)
        os.replace(tmp, a.json)
    if a.compare:
        with open(a.compare) as f:
            ours = json.load(f)
        for key in ("workload", "model", "batch", "seq_len"):
            if ours[key] != report[key]:
                raise SystemExit(f"{a.compare}: {key} is {ours[key]!r}, this run's is {report[key]!r}")
        ratio = s["median"] / ours["step_seconds"]["median"]
        print(f"gcse ({ours['backend']}) vs this run: {ratio:.2f}x "
              f"({ours['step_seconds']['median'] * 1e3:.1f} ms vs {s['median'] * 1e3:.1f} ms per step; "
              f">1 means gcse is faster)")


if __name__ == "__main__":
    main()
