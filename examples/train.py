"""SHAC, SHAC+ or SHAC++ on a VMAS task, in plain TorchRL: the whole training loop in one file.

Each iteration collects one window of ``--window`` steps on ``--num-envs`` parallel envs (with the simulator's autograd
graph for SHAC and SHAC+, without it for SHAC++) and hands it to the package's window update: one actor step on the
SHAC window objective, the graph cut, the TD(λ) targets, the learned models' caches and their cool-down training
(SHAC+: a reward model on the simulator's observations; SHAC++: world and reward models, and the critic from its
cache). SHAC and SHAC+ then fit the critic to the window's targets here, in ``--critic-epochs`` passes of
``--critic-minibatches`` minibatches (DiffRL's 16 x 4), and move the target critic. A deterministic evaluation runs
every ``--eval-every`` windows; the return-vs-frames curve (``<out>/curve.csv``, ``<out>/curve.png``) and the
policy's state dict (``<out>/policy.pt``) are written at each.

    python examples/train.py --algorithm shac --task transport --n-agents 3 --frames 2000000
    python examples/train.py --algorithm shacpp --task dispersion --n-agents 3 --frames 2000000 --cache-size 10000
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torchrl.envs import ExplorationType, set_exploration_type
from tqdm import tqdm

from torchrl_shacpp.collectors import WindowCollector
from torchrl_shacpp.envs import make_vmas_env
from torchrl_shacpp.optim import FiniteGradientStep
from torchrl_shacpp.trainers import make_learners

GROUP = "agents"


@dataclass
class Args:
    """The command line; defaults are the paper's where it gives one."""

    algorithm: str = "shac"  # shac, shacp or shacpp
    task: str = "transport"  # transport, sampling (differentiable rewards), dispersion, discovery
    n_agents: int = 3
    num_envs: int = 64  # parallel envs B (paper: 512)
    window: int = 32  # window length h (paper: 32)
    frames: int = 1_000_000  # env steps to train for
    max_steps: int = 100  # episode time limit (0: none, as the authors')
    reset_every: int = 10  # reset every env every K windows (paper: 10; 0: never)
    gamma: float = 0.99
    lmbda: float = 0.95
    lr: float = 1e-3  # Adam learning rate of every network (paper: 1e-3)
    action_std: float = 1.0  # the policy's std (paper: 1)
    critic_epochs: int = 16  # SHAC, SHAC+: passes over each window for the critic (DiffRL: 16)
    critic_minibatches: int = 4  # SHAC, SHAC+: minibatches per pass (DiffRL: 4)
    cache_size: int = 30_000  # SHAC+, SHAC++: items in each model cache (paper: 30,000)
    train_every: int = 10  # SHAC+, SHAC++: train the models every C windows (paper: 10)
    model_epochs: int = 10  # SHAC+, SHAC++: passes over each cache per training (paper: 10)
    minibatch: int = 1000  # SHAC+, SHAC++: model minibatch size (paper: 1,000)
    eval_every: int = 20  # windows between evaluations
    eval_envs: int = 128
    eval_steps: int = 100  # evaluation episode length (paper: 512)
    max_minutes: float = math.inf  # stop after this wall-clock time
    threads: int = 1
    seed: int = 0
    out: Path = Path("runs/train")
    quiet: bool = False  # no progress bar


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for field in dataclasses.fields(Args):
        flag = f"--{field.name.replace('_', '-')}"
        if field.type == "bool":
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, type=type(field.default), default=field.default)
    return Args(**vars(parser.parse_args()))


@torch.no_grad()
def evaluate(env, policy, steps: int) -> float:
    """Mean over envs of the first episode's return (mean over agents), deterministic policy without dropout."""
    policy.eval()
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = env.rollout(steps, policy, break_when_any_done=False)
    policy.train()
    reward = rollout["next", GROUP, "reward"].mean((-2, -1))  # [B, T]
    done = rollout["next", "done"].squeeze(-1).long()
    return (reward * ((done.cumsum(-1) - done) == 0)).sum(-1).mean().item()


def save_curve(rows: list[dict], out: Path, title: str) -> None:
    with open(out / "curve.csv", "w", newline="") as file:  # the model losses appear at their first training
        writer = csv.DictWriter(file, fieldnames=list({key: None for row in rows for key in row}), restval="nan")
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([row["frames"] for row in rows], [row["eval_return"] for row in rows], marker="o")
    ax.set(xlabel="frames (env steps)", ylabel="deterministic evaluation return", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=120)
    plt.close(fig)


def main(args: Args) -> list[dict]:
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    simulator_graph = args.algorithm != "shacpp"
    env_kwargs = dict(n_agents=args.n_agents, differentiable_reward=simulator_graph)
    env = make_vmas_env(args.task, num_envs=args.num_envs, seed=args.seed, max_steps=args.max_steps or None, **env_kwargs)
    eval_env = make_vmas_env(args.task, num_envs=args.eval_envs, seed=args.seed + 1, max_steps=args.eval_steps, **env_kwargs)
    learners = make_learners(
        env, args.algorithm, window_length=args.window, gamma=args.gamma, lmbda=args.lmbda, actor_lr=args.lr,
        model_lr=args.lr, action_std=args.action_std, policy_dropout=0.1 * (args.algorithm == "shacpp"),
        cache_size=args.cache_size, model_minibatch_size=args.minibatch, model_train_every=args.train_every,
        model_epochs=args.model_epochs,
    )  # fmt: skip
    value_loss = learners.value_loss
    critic_step = FiniteGradientStep(torch.optim.Adam(value_loss.parameters(), lr=args.lr))
    collector = WindowCollector(
        env, learners.policy, window_length=args.window, total_frames=args.frames, reset_every=args.reset_every or None,
        graph="simulator" if simulator_graph else "policy",
    )  # fmt: skip

    rows, logs, started = [], {}, time.perf_counter()
    progress = tqdm(total=args.frames, unit="frames", disable=args.quiet)
    for index, window in enumerate(collector):
        logs.update(learners.update(window))  # actor step, value targets written into the window, models
        if learners.update.groups[GROUP].value_model is None:  # SHAC, SHAC+: the critic trains on this window
            flat = window.detach().reshape(-1)
            for _ in range(args.critic_epochs):
                for minibatch in flat[torch.randperm(len(flat))].chunk(args.critic_minibatches):
                    critic_step(value_loss(minibatch)["loss_value"])
            learners.target_updater.step()

        frames, seconds = (index + 1) * window.numel(), time.perf_counter() - started
        progress.update(window.numel())
        stop = frames >= args.frames or seconds > 60 * args.max_minutes
        if index % args.eval_every == 0 or stop:
            eval_return = evaluate(eval_env, learners.policy, args.eval_steps)
            train_logs = {key.rpartition("/")[2]: value for key, value in logs.items() if key.startswith("train/")}
            rows.append({"frames": frames, "windows": index + 1, "seconds": round(seconds, 1),
                         "eval_return": eval_return, **train_logs})  # fmt: skip
            progress.set_postfix(eval_return=f"{eval_return:.3f}")
            save_curve(rows, args.out, f"{args.algorithm} {args.task} n={args.n_agents}")
            torch.save(learners.policy.state_dict(), args.out / "policy.pt")
        if stop:
            break
    progress.close()
    collector.shutdown()
    eval_env.close()
    print(f"last evaluation return: {rows[-1]['eval_return']:.4f} after {rows[-1]['frames']} frames")
    return rows


if __name__ == "__main__":
    main(parse_args())
