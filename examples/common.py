"""What the example training scripts share: the Gaussian actor, the command line, evaluation and the training log."""

from __future__ import annotations

import argparse
import csv
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.envs import EnvBase, ExplorationType, set_exploration_type
from torchrl.modules import ProbabilisticActor
from tqdm import tqdm

from torchrl_shacpp.modules import gaussian_actor as make_gaussian_actor
from torchrl_shacpp.optim import FiniteGradientStep

GROUP = "agents"


def gaussian_actor(network: nn.Module, env: EnvBase, action_std: float, learn_std: bool) -> ProbabilisticActor:
    """The agents' Gaussian policy around ``network``'s mean, its samples clamped to ``env``'s action box
    (:func:`torchrl_shacpp.modules.gaussian_actor`)."""
    loc = TensorDictModule(network, in_keys=[(GROUP, "observation")], out_keys=[(GROUP, "loc")])
    spec = env.full_action_spec_unbatched[GROUP, "action"]
    return make_gaussian_actor(
        loc, action_dim=spec.shape[-1], loc_key=(GROUP, "loc"), scale_key=(GROUP, "scale"),
        action_key=(GROUP, "action"), action_std=action_std, learn_std=learn_std, spec=spec,
    )  # fmt: skip


@torch.no_grad()
def evaluate(env: EnvBase, policy: ProbabilisticActor, steps: int) -> float:
    """Mean over envs of the first episode's undiscounted return (mean over agents): deterministic policy, no
    dropout (the policy's train/eval mode is restored afterwards)."""
    training = policy.training
    policy.eval()
    try:
        with set_exploration_type(ExplorationType.DETERMINISTIC):
            rollout = env.rollout(steps, policy, break_when_any_done=False)
    finally:
        policy.train(training)
    reward = rollout["next", GROUP, "reward"].mean(-2).squeeze(-1)  # [B, T]
    done = rollout["next", "done"].squeeze(-1)
    in_first_episode = (done.cumsum(-1) - done.long()) == 0
    return (reward * in_first_episode).sum(-1).mean().item()


def save_curve(rows: list[dict], out: Path, title: str) -> None:
    """Writes ``rows`` to ``out/curve.csv`` and plots the evaluation return to ``out/curve.png``."""
    with open(out / "curve.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["frames"] for r in rows], [r["eval_return"] for r in rows], marker="o")
    ax.set_xlabel("frames (env steps)")
    ax.set_ylabel("deterministic evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=120)
    plt.close(fig)


class TrainingLog:
    """Progress bar, deterministic evaluation every ``args.eval_every`` windows, the curve and a policy checkpoint
    (``policy.pt``) at each evaluation, and the stop signal (frames or ``args.max_minutes`` spent)."""

    def __init__(self, args: argparse.Namespace, eval_env: EnvBase, policy: ProbabilisticActor, title: str) -> None:
        self.args, self.eval_env, self.policy, self.title = args, eval_env, policy, title
        self.rows: list[dict] = []
        self.started = time.perf_counter()
        self.progress = tqdm(total=args.frames, unit="frames", disable=args.quiet)

    def window_done(
        self,
        index: int,
        window: TensorDictBase,
        actor_info: dict[str, float],
        actor_step: FiniteGradientStep,
        extra: Callable[[], dict] = dict,
    ) -> bool:
        """Call after window ``index`` with the actor step's info; ``extra()`` gives more columns for an evaluation
        row. Returns whether training should stop."""
        frames = (index + 1) * window.numel()
        self.progress.update(window.numel())
        seconds = time.perf_counter() - self.started
        stop = frames >= self.args.frames or seconds > 60 * self.args.max_minutes
        if index % self.args.eval_every == 0 or stop:
            eval_return = evaluate(self.eval_env, self.policy, self.args.max_steps)
            self.rows.append(
                {
                    "frames": frames,
                    "windows": index + 1,
                    "seconds": round(seconds, 1),
                    "eval_return": eval_return,
                    "train_reward": window["next", GROUP, "reward"].mean().item(),
                    "actor_grad_norm": actor_info["grad_norm"],
                    "skipped_actor_steps": actor_step.skipped_steps,
                    **extra(),
                }
            )
            self.progress.set_postfix(eval_return=f"{eval_return:.3f}")
            save_curve(self.rows, self.args.out, self.title)
            torch.save(self.policy.state_dict(), self.args.out / "policy.pt")
        return stop

    def close(self) -> list[dict]:
        self.progress.close()
        self.eval_env.close()
        return self.rows


def scenario_kwarg(text: str) -> tuple[str, float | int]:
    """``"key=value"`` to ``(key, number)``."""
    key, _, value = text.partition("=")
    if not key or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    number = float(value)
    return key, int(number) if number.is_integer() and "." not in value else number


def common_parser(description: str, task: str, out: str) -> argparse.ArgumentParser:
    """The flags both examples take; the defaults are the paper's where it gives one."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default=task, help="transport, sampling, dispersion or discovery")
    parser.add_argument("--n-agents", type=int, default=3)
    parser.add_argument(
        "--scenario", type=scenario_kwarg, action="append", default=[], metavar="KEY=VALUE",
        help="scenario kwarg, repeatable, e.g. --scenario approach_coef=0.5 (transport) or food_radius=0.05",
    )  # fmt: skip
    parser.add_argument("--num-envs", type=int, default=512, help="parallel envs B (paper: 512)")
    parser.add_argument("--window", type=int, default=32, help="window length h (paper: 32)")
    parser.add_argument("--frames", type=int, default=1_000_000, help="env steps to train for")
    parser.add_argument("--max-steps", type=int, default=100, help="episode time limit")
    parser.add_argument("--reset-every", type=int, default=10, help="reset all envs every K windows (paper: 10)")
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--lmbda", type=float, default=0.95)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (paper: 1e-3)")
    parser.add_argument("--action-std", type=float, default=1.0, help="policy std (paper: variance 1)")
    parser.add_argument("--learn-std", action="store_true", help="learn a state-independent log-std")
    parser.add_argument("--eval-every", type=int, default=20, help="windows between evaluations")
    parser.add_argument("--eval-envs", type=int, default=128)
    parser.add_argument("--max-minutes", type=float, default=math.inf, help="stop after this wall-clock time")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def run(train: Callable[[argparse.Namespace], list[dict]], parser: argparse.ArgumentParser) -> None:
    """Parses the command line, seeds, trains and reports the last evaluation."""
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rows = train(args)
    print(f"final eval return {rows[-1]['eval_return']:.3f} after {rows[-1]['frames']} frames; wrote {args.out}")
