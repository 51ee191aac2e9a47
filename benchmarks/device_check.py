"""Does a BenchMARL run of the SHAC family stay on the device it is given?

For each algorithm, one BenchMARL experiment runs ``--iters`` windows with ``experiment.sampling_device``,
``train_device`` and ``buffer_device`` all set to ``--device``. Then two checks:

- **where the state lives**: every tensor reachable from the experiment (losses' parameters and buffers,
  optimiser states, caches and replay buffers, the algorithm's own attributes, the environments) is walked, and
  each one not on ``--device`` is listed with its path, shape and dtype;
- **what crosses to the host while training**: one window (training, then the next collection) under
  ``torch.profiler``, counting device-to-host and host-to-device copies and host synchronisations
  (``aten::_local_scalar_dense``, i.e. ``.item()``).

Usage (``benchmarks/results/device_check.md`` was made with the command at its top)::

    python benchmarks/device_check.py --device cuda --iters 4 --out benchmarks/results/device_check.md \\
        --override shacpp:algorithm.model_train_every=2
"""

from __future__ import annotations

import argparse
import platform
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import torch
from benchmarl_experiment import ProfileWindow, compose_experiment
from tensordict import TensorDictBase
from torch import nn

# Objects whose attributes the walk enters: the ecosystem's and ours (not, e.g., hydra's or numpy's).
WALKED_PACKAGES = ("torchrl_shacpp", "torchrl", "tensordict", "benchmarl", "vmas", "torch.optim")


def tensors(root: Any, path: str, seen: set[int], depth: int = 0) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor reachable from ``root`` through modules, tensordicts, containers and our packages' objects."""
    if id(root) in seen or depth > 12:
        return
    seen.add(id(root))
    if isinstance(root, torch.Tensor):
        yield path, root
    elif isinstance(root, nn.Module):
        for name, tensor in [*root.named_parameters(), *root.named_buffers()]:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                yield f"{path}.{name}", tensor
        for name, value in vars(root).items():
            if name not in ("_parameters", "_buffers", "_modules"):
                yield from tensors(value, f"{path}.{name}", seen, depth + 1)
        for name, module in root.named_children():
            yield from tensors(module, f"{path}.{name}", seen, depth + 1)
    elif isinstance(root, TensorDictBase):
        for key, value in root.items(include_nested=True, leaves_only=True):
            yield f"{path}[{key}]", value
    elif isinstance(root, torch.optim.Optimizer):
        for index, state in enumerate(root.state.values()):
            yield from tensors(state, f"{path}.state[{index}]", seen, depth + 1)
    elif isinstance(root, dict):
        for key, value in root.items():
            yield from tensors(value, f"{path}[{key!r}]", seen, depth + 1)
    elif isinstance(root, (list, tuple)):
        for index, value in enumerate(root):
            yield from tensors(value, f"{path}[{index}]", seen, depth + 1)
    elif type(root).__module__.startswith(WALKED_PACKAGES) and hasattr(root, "__dict__"):
        for name, value in vars(root).items():
            yield from tensors(value, f"{path}.{name}", seen, depth + 1)


def overrides_for(algorithm: str, overrides: list[str]) -> list[str]:
    """The overrides that apply to ``algorithm``: plain ones, and ``<algorithm>:<override>`` ones for it alone."""
    chosen = []
    for override in overrides:
        name, _, own = override.partition(":") if ":" in override.split("=")[0] else ("", "", override)
        if name in ("", algorithm):
            chosen.append(own)
    return chosen


def check(algorithm: str, args: argparse.Namespace) -> dict[str, Any]:
    """Runs one experiment on ``args.device`` and returns what stayed elsewhere and what crossed to the host."""
    overrides = [
        f"algorithm={algorithm}", f"task.n_agents={args.n_agents}", f"experiment={args.preset}",
        f"experiment.max_n_iters={args.iters}", "experiment.evaluation=false", "experiment.loggers=[]",
        "experiment.render=false", "experiment.create_json=false", "experiment.checkpoint_interval=0",
        f"experiment.sampling_device={args.device}", f"experiment.train_device={args.device}",
        f"experiment.buffer_device={args.device}", f"experiment.save_folder={args.save_folder}",
        *overrides_for(algorithm, args.override),
    ]  # fmt: skip
    profiler = ProfileWindow(args.iters - 1, cuda=args.device.startswith("cuda"), through_next_collection=True)
    experiment = compose_experiment(args.task, overrides, [profiler])
    experiment.run()
    device = torch.device(args.device)
    elsewhere, count = [], 0
    for path, tensor in tensors(experiment, "experiment", set()):
        count += 1
        # Meta tensors hold no data (TorchRL's multi-agent MLPs keep an empty template network on "meta").
        if tensor.device.type not in (device.type, "meta"):
            elsewhere.append((path, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."), str(tensor.device)))
    calls = Counter()
    for event in profiler.events.values():
        for marker in ("Memcpy DtoH", "Memcpy HtoD", "Memcpy DtoD", "aten::_local_scalar_dense", "aten::_to_copy"):
            if marker in event.key:
                calls[marker] += event.count
    return {"tensors": count, "elsewhere": elsewhere, "calls": calls}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--algorithms", nargs="+", default=["shac", "shacp", "shacpp"])
    parser.add_argument("--task", default="vmas/transport")
    parser.add_argument("--n-agents", type=int, default=3)
    parser.add_argument("--preset", default="shacpp_paper")
    parser.add_argument("--iters", type=int, default=4)
    parser.add_argument("--save-folder", default="/tmp")
    parser.add_argument("--override", nargs="*", default=[], help="more hydra overrides; <algorithm>:<override> for one algorithm only")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "CPU"
    lines = [
        "# Does a SHAC-family BenchMARL run stay on its device?", "",
        f"Command: `python benchmarks/device_check.py --device {args.device} --iters {args.iters} "
        f"--algorithms {' '.join(args.algorithms)} "
        f"--preset {args.preset} --task {args.task} --n-agents {args.n_agents}"
        + (f" --override {' '.join(args.override)}" if args.override else "") + "`", "",
        f"{device_name}, torch {torch.__version__}. Each run: `experiment.sampling_device`, `train_device` and "
        f"`buffer_device` = `{args.device}`. 'Tensors' counts every tensor reachable from the experiment after the run; "
        "'elsewhere' lists those not on the device. Copies and `.item()` calls are counted over one window's "
        "training and the next collection (`torch.profiler`).", "",
        "| algorithm | tensors | not on the device | DtoH copies | HtoD copies | `.item()` | `aten::_to_copy` |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    details = []
    for algorithm in args.algorithms:
        result = check(algorithm, args)
        calls = result["calls"]
        lines.append(
            f"| {algorithm} | {result['tensors']} | {len(result['elsewhere'])} | {calls['Memcpy DtoH']} | "
            f"{calls['Memcpy HtoD']} | {calls['aten::_local_scalar_dense']} | {calls['aten::_to_copy']} |"
        )
        details += [f"", f"### {algorithm}: tensors not on `{args.device}`", ""]
        details += [f"- `{path}` {shape} {dtype} on {where}" for path, shape, dtype, where in result["elsewhere"]]
        details += ["- none"] if not result["elsewhere"] else []
        args.out.write_text("\n".join(lines + details) + "\n")
        print("\n".join(lines + details), flush=True)


if __name__ == "__main__":
    main()
