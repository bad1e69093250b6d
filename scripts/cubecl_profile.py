#!/usr/bin/env python3
"""Where a `gcse bench` step's GPU time goes, from CubeCL's kernel profile.

CubeCL writes one line per kernel launch, `| 45.4µs | KernelName | ... |
CudaRuntime`, when its profiling logger is on. Put this in a `cubecl.toml`
in the directory gcse runs from:

    [profiling.logger]
    level = "basic"
    file = "/tmp/prof.log"

then run 3 to 5 identical steps (`gcse bench train ... --steps 3`). Every
launch is timed on its own (the device is synchronised around it), so the
sum runs over the unprofiled step time; the shares are what this reports.

A step is found as the longest tail of launches whose kernel sequence
repeats three times back to back (warm-up and autotuning launches differ).

Usage: python3 scripts/cubecl_profile.py /tmp/prof.log [--top 15]
"""

import argparse
import collections
import re

UNITS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}
LAUNCH = re.compile(r"^\|\s*([0-9.]+)\s*(s|ms|µs|us|ns)\s*\|(.*)$")


def launches(path):
    """(kernel name, seconds) for each profiled launch, in order."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = LAUNCH.match(line.rstrip("\n"))
            if m:
                fields = [p.strip() for p in m.group(3).strip().strip("|").split("|")]
                name = " | ".join(fields[:-1]) if len(fields) > 1 else fields[0]
                out.append((name, float(m.group(1)) * UNITS[m.group(2)]))
    return out


def step_length(names):
    """The longest p such that the last 3p names are one sequence three
    times, or None. (With 3 to 5 identical steps at the end that is one
    step; the shorter periods are patterns inside a step, such as the
    optimizer's update of same-shaped parameters.)"""
    n = len(names)
    for p in range(n // 3, 0, -1):
        if names[n - p:] == names[n - 2 * p:n - p] == names[n - 3 * p:n - 2 * p]:
            return p
    return None


def category(name):
    head = name.split(" | ")[0]
    if head.startswith("Matmul"):
        return "matrix products"
    if head.startswith("Reduce"):
        return "reductions (norms, softmax, sums)"
    if head == "ElemwiseFuse":
        return "fused element-wise"
    if "Copy" in head:
        return "copies"
    return "other element-wise and indexing"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log")
    p.add_argument("--top", type=int, default=15)
    a = p.parse_args()
    all_launches = launches(a.log)
    period = step_length([n for n, _ in all_launches])
    if period is None:
        raise SystemExit(f"{a.log}: no launch sequence repeats three times at its end "
                         f"({len(all_launches)} launches): run more identical steps")
    step = all_launches[-period:]
    total = sum(t for _, t in step)
    print(f"{period} launches a step, {total * 1e3:.1f} ms of kernel time (profiled)")
    for title, key in (("by category", category), ("by kernel", lambda n: n[:100])):
        groups = collections.defaultdict(lambda: [0, 0.0])
        for name, t in step:
            g = groups[key(name)]
            g[0] += 1
            g[1] += t
        print(f"\n{title}:\n  launches      ms   share")
        ranked = sorted(groups.items(), key=lambda kv: -kv[1][1])
        for name, (count, t) in ranked[:a.top]:
            print(f"  {count:8d} {t * 1e3:7.2f} {100 * t / total:6.1f}%  {name}")
    short = [t for _, t in step if t < 20e-6]
    print(f"\nlaunches under 20 µs: {len(short)}, {sum(short) * 1e3:.2f} ms together")


if __name__ == "__main__":
    main()
