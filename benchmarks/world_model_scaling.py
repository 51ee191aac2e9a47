"""World-model training cost against the number of agents: axis attention (fast) vs dense masked attention.

Two measurements per (batch ``B``, ``n_agents``) and attention path, each in a fresh subprocess:

* **model**: :class:`AxisAttentionWorldModel` with the paper's settings (3 layers, hidden 64, feed-forward 128,
  1 head), forward + MSE + backward on ``B`` windows of ``h`` actions: the training step.
* **attention core**: :meth:`AxisSelfAttention.attend` alone (forward + backward) on ``[B, 1, h+1, n, 64]``
  queries, keys and values: the only op that differs between the two paths.

Peak memory is the subprocess's peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``) minus its resident
size just before the first pass (model, inputs and targets already allocated): what the pass adds (activations,
attention scores, gradients). It is measured in its own one-pass run with glibc's ``MALLOC_MMAP_THRESHOLD_``
fixed, so freed tensors leave the resident set at once (the default dynamic threshold keeps blocks up to 32 MiB
in the heap and inflates the high-water mark by fragmentation, up to 2x here); the time comes from a second run
with the default allocator. Configurations whose estimated peak exceeds ``--mem-limit-gib`` are not run; the
table shows the estimate. Estimates: the fast model keeps about ``L (900 + 2 (n + T))`` float32 values per token
(``T = h + 1``; counted with saved-tensor hooks) plus ~20% transient; the dense path adds ``L + 3`` float32
``B x (T n)^2`` score matrices (one softmax output saved per layer, and logits, masked logits and a gradient
live at the peak).

A third model variant, **fast+ckpt**, adds layer checkpointing over batch slices (``checkpoint_chunks``).

Usage (results/world_model_scaling.md was made with the command written at its top)::

    python benchmarks/world_model_scaling.py --sweep 512:1,3,10,20,50,100 --sweep 64:20,50,100 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from torchrl_shacpp.modules import AxisAttentionWorldModel, AxisSelfAttention

OBS_DIM, ACTION_DIM, HIDDEN, NUM_LAYERS = 16, 2, 64, 3
GIB = 2**30
PARTS = ("model", "core")
#: Attention paths: axis attention, axis attention with layer checkpointing over batch slices, dense reference.
VARIANTS = {"model": ("fast", "fast-ckpt", "dense"), "core": ("fast", "dense")}
CHECKPOINT_CHUNKS = 8


def scores_gib(batch: int, steps: int, n_agents: int) -> float:
    """One dense float32 ``B x (T n)^2`` attention score matrix (one head)."""
    return batch * (steps * n_agents) ** 2 * 4 / GIB


def peak_estimate_gib(part: str, variant: str, batch: int, steps: int, n_agents: int) -> float:
    tokens = batch * steps * n_agents
    if part == "model":
        layer = 900 + 2 * (n_agents + steps)
        fast, dense_copies = 1.2 * tokens * NUM_LAYERS * layer * 4 / GIB, NUM_LAYERS + 3
        if variant == "fast-ckpt":  # layer inputs and gradients, plus one layer's activations for a batch slice
            return 1.2 * tokens * (4 * HIDDEN + NUM_LAYERS * HIDDEN + layer / CHECKPOINT_CHUNKS) * 4 / GIB
    else:
        fast, dense_copies = tokens * (8 * HIDDEN + 4 * (n_agents + steps)) * 4 / GIB, 4
    return fast + dense_copies * scores_gib(batch, steps, n_agents) if variant == "dense" else fast


def worker(part: str, variant: str, batch: int, horizon: int, n_agents: int, repeats: int) -> dict[str, float]:
    """Run in a fresh process: median time of forward + backward and the peak memory they add."""
    torch.manual_seed(0)
    steps = horizon + 1
    dense = variant == "dense"
    if part == "model":
        chunks = CHECKPOINT_CHUNKS if variant == "fast-ckpt" else 0
        model = AxisAttentionWorldModel(
            OBS_DIM, ACTION_DIM, horizon, num_layers=NUM_LAYERS, dense_attention=dense, checkpoint_chunks=chunks
        )
        forward, leaves = model, list(model.parameters())
        inputs = (torch.randn(batch, n_agents, OBS_DIM), torch.randn(batch, horizon, n_agents, ACTION_DIM))
        target = torch.randn(batch, steps, n_agents, OBS_DIM)
    else:
        forward = AxisSelfAttention(HIDDEN, dense=dense).attend
        inputs = tuple(torch.randn(batch, 1, steps, n_agents, HIDDEN, requires_grad=True) for _ in range(3))
        leaves, target = list(inputs), torch.randn(batch, 1, steps, n_agents, HIDDEN)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats + 1):  # the first pass is a warm-up
        start = time.perf_counter()
        (forward(*inputs) - target).pow(2).mean().backward()
        times.append(time.perf_counter() - start)
        for leaf in leaves:
            leaf.grad = None
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    time_s = statistics.median(times[1:]) if repeats else None
    return {"time_s": time_s, "peak_gib": (peak_kib - baseline_kib) / 2**20}


def _run_worker(part: str, variant: str, batch: int, horizon: int, n_agents: int, repeats: int, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--worker", part, f"--variant={variant}", f"--horizon={horizon}"]
    cmd += [f"--repeats={repeats}", f"--sweep={batch}:{n_agents}"]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, **env})
    if proc.returncode:
        raise RuntimeError(f"failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(part: str, variant: str, batch: int, horizon: int, n_agents: int, args) -> dict[str, float] | str:
    """Peak memory from one pass and (for the model) time from ``1 + repeats`` passes, each configuration in
    fresh subprocesses (``ru_maxrss`` is then this configuration's peak alone)."""
    estimate = peak_estimate_gib(part, variant, batch, horizon + 1, n_agents)
    if estimate > args.mem_limit_gib:
        return f"skipped (est. {estimate:.0f} GiB)"
    try:
        # A fixed mmap threshold makes glibc return every freed large block at once, so the resident high-water
        # mark is the peak of live tensors rather than of heap fragmentation. It slows allocation, hence a
        # separate run with the default allocator for the time.
        result = _run_worker(part, variant, batch, horizon, n_agents, 0, {"MALLOC_MMAP_THRESHOLD_": "131072"})
        if part == "model":
            result["time_s"] = _run_worker(part, variant, batch, horizon, n_agents, args.repeats, {})["time_s"]
    except RuntimeError as error:
        return str(error)
    return result


def row(batch: int, horizon: int, n_agents: int, args) -> str:
    steps = horizon + 1
    cells = [str(batch), str(n_agents), str(steps * n_agents), f"{scores_gib(batch, steps, n_agents):.3g}"]
    for part in PARTS:
        results = {variant: measure(part, variant, batch, horizon, n_agents, args) for variant in VARIANTS[part]}
        for result in results.values():
            if isinstance(result, str):
                cells += [result, ""] if part == "model" else [result]
            else:  # the core's time is not reported: the model's is what training pays
                cells += [f"{result['time_s']:.3g}"] if part == "model" else []
                cells.append(f"{result['peak_gib']:.3g}")
        dense = results["dense"]
        for variant in VARIANTS[part][:-1]:
            fast = results[variant]
            both = isinstance(fast, dict) and isinstance(dense, dict)
            cells.append(f"{dense['peak_gib'] / fast['peak_gib']:.1f}×" if both else "")
    return "| " + " | ".join(cells) + " |"


HEADER = [
    (
        "| B | n | tokens (h+1)·n | one dense score matrix (GiB) "
        "| model fast time (s) | model fast peak (GiB) | model fast+ckpt time (s) | model fast+ckpt peak (GiB) "
        "| model dense time (s) | model dense peak (GiB) | model dense / fast memory | model dense / fast+ckpt memory "
        "| core fast peak (GiB) | core dense peak (GiB) | core dense / fast memory |"
    ),
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def parse_sweep(text: str) -> tuple[int, list[int]]:
    batch, agents = text.split(":")
    return int(batch), [int(n) for n in agents.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sweep",
        type=parse_sweep,
        action="append",
        help="BATCH:N1,N2,... (repeatable). Default 512:1,3,5,10,20,50,100",
    )
    parser.add_argument("--horizon", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed passes after one warm-up")
    parser.add_argument("--mem-limit-gib", type=float, default=16.0, help="skip configurations estimated above")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "world_model_scaling.md")
    parser.add_argument("--worker", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=VARIANTS["model"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    sweeps = args.sweep or [(512, [1, 3, 5, 10, 20, 50, 100])]

    if args.worker:
        ((batch, (n_agents,)),) = sweeps
        print(json.dumps(worker(args.worker, args.variant, batch, args.horizon, n_agents, args.repeats)))
        return

    lines = [
        "# World-model scaling: axis attention (fast) vs dense masked attention",
        "",
        f"Command: `python benchmarks/world_model_scaling.py {' '.join(sys.argv[1:])}`",
        "",
        (
            f"CPU ({platform.machine()}, {torch.get_num_threads()} torch threads, shared with other jobs, so times "
            f"are noisy), torch {torch.__version__}, float32, h = {args.horizon}. **model**: `AxisAttentionWorldModel` "
            f"({NUM_LAYERS} layers, hidden {HIDDEN}, feed-forward 128, 1 head; obs_dim {OBS_DIM}, action_dim "
            f"{ACTION_DIM}), forward + MSE + backward, median of {args.repeats} passes after a warm-up; **fast+ckpt** "
            f"is the same with `checkpoint_chunks={CHECKPOINT_CHUNKS}` (each layer recomputed in backward, "
            f"{CHECKPOINT_CHUNKS} batch slices at a time; same function and gradients). **core**: "
            "`AxisSelfAttention.attend` alone, forward + backward. Peak = resident-set high-water mark of a fresh "
            "process minus its size before the first pass, in a one-pass run with `MALLOC_MMAP_THRESHOLD_=131072` "
            "(live tensors, not heap fragmentation); times from a separate run with the default allocator. "
            "Configurations estimated above "
            f"{args.mem_limit_gib:g} GiB are skipped (estimate in the cell; see the script's docstring)."
        ),
        "",
        *HEADER,
    ]
    for batch, agents in sweeps:
        for n_agents in agents:
            lines.append(row(batch, args.horizon, n_agents, args))
            print(lines[-1], flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
