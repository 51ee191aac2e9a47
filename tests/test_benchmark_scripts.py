"""Every measurement script of ``benchmarks/`` runs end to end at tiny sizes and writes the table it promises.

Nothing imports these scripts, so one goes stale silently when the package's internals move (``dispersion_probes.py``
did: an AttributeError on its first probed window, seen only when run for real). Each case runs a script as a user
would, from the repository root in a fresh interpreter, with the smallest options that still reach every stage (data,
model fitting, the probe or the timing, the table or CSV written), and looks for a row of numbers in what it wrote.

``arena_walls.py`` and ``transport_contacts.py`` have their own tests (they read a checkpoint, which a tiny run writes
first). Not run:
``gpu_session.sh`` and ``parallel_runs.sh`` (shell), ``benchmarl_experiment.py`` (a module the others import), and
``model_step_cost.py --compile`` (inductor's compilation would dominate the file's time).
"""

from __future__ import annotations

import copy
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import vmas
from benchmarl.algorithms import MappoConfig
from benchmarl.models import MlpConfig
from test_benchmark import synthetic_run
from test_benchmarl import TINY

from torchrl_shacpp.benchmarl import PaperVmasTask, ShacppConfig
from torchrl_shacpp.envs import DifferentiableTransport
from torchrl_shacpp.modules import TransitionWorldModel

REPO = Path(__file__).parents[1]
# A number as the scripts print it (0.25, -1.3, 6.7e-08), and a mean ± standard deviation.
N, PM = r"-?\d[\d,]*(?:\.\d+)?(?:e[+-]\d+)?", r"-?\d+\.\d+ ± \d+\.\d+"
# SHAC+'s and SHAC++'s learned models trained after every window, on a few minibatches.
MODELS = ["algorithm.model_train_every=1", "algorithm.model_epochs=1", "algorithm.cache_size=200"]
SHACPP_MODELS = [*MODELS, "algorithm.world_model_steps=2"]


def row(*cells: str) -> str:
    """A whole Markdown table row of these cells (regular expressions)."""
    return r"^\| " + r" \| ".join(cells) + r" \|$"


# script (and what the case varies): arguments ({tmp}: the test's folder, {runs}: the `runs` fixture), where the
# script writes (stdout or a glob under {tmp}), and what must be there.
CASES = {
    "action_jacobian_identifiability.py": (
        ["--task", "sampling", "--n-agents", "2", "--transitions", "64", "--steps", "2", "--kinematics", "0:4",
         "--block", "pos=0:2", "--block", "vel=2:4"],
        "stdout", row("own kinematics only", f"{N} / {N}", f"{N} / {N}", r"pos \d+% / vel \d+%"),
    ),
    "actor_gradient_norms.py": (  # known answer: norms 0.5, 1, ..., 64 over 8 collections, 2 seeds pooled
        ["SHAC++={runs}/shacpp_s*", "--spike", "10"],
        "stdout", row("SHAC\\+\\+", "2", "16", "0.75 / 1 / 1 / 0%", "3 / 4 / 4 / 0%", "12 / 16 / 16 / 50%",
                      "48 / 64 / 64 / 100%"),
    ),
    "bad_inputs.py": (  # the harness on one command-line and one Python case (test_bad_inputs.py tests each case)
        ["--only", "8", "A1", "--output", "{tmp}/bad_inputs.md"],
        "bad_inputs.md", r"^Totals: CLEAR 2, UNCLEAR 0, WRONG 0, BENCHMARL 0\.$",
    ),
    "benchmarl_throughput.py": (  # the steady-state worker, and a cool-down in the timed iterations
        ["--iters", "3", "--n-agents", "2", "--steady-state", "--baseline", "base_experiment::mappo", "--runs",
         "base_experiment::mappo", "shacpp_cpu::shacpp::" + "::".join(SHACPP_MODELS),
         "--output", "{tmp}/throughput.md", "--override", *TINY],
        "throughput.md", row("`shacpp_cpu::shacpp::[^`]+`", "64", *[N] * 6, N + "×"),
    ),
    "device_check.py": (
        ["--device", "cpu", "--iters", "2", "--algorithms", "shac", "shacpp", "--preset", "shacpp_cpu", "--n-agents",
         "2", "--save-folder", "{tmp}", "--out", "{tmp}/device_check.md", "--override", *TINY,
         *(f"shacpp:{override}" for override in SHACPP_MODELS)],
        "device_check.md", row("shacpp", r"\d+", "0", "0", "0", r"\d+", r"\d+"),
    ),
    "dispersion_probes.py shacp": (  # the window holds the simulator's per-step actions
        ["--windows", "2", "--every", "1", "--out", "{tmp}/probes.csv", *TINY, "algorithm=shacp", "task.n_agents=1",
         *MODELS, "experiment.save_folder={tmp}"],
        "probes.csv", rf"^window,frames,eval_return,policy_cos_0.0-0.15,.*,rewarded_cache\n1,\d+,nan,.*\n2,\d+,{N},",
    ),
    "dispersion_probes.py shacpp": (  # the window is re-attached through the world model
        ["--windows", "2", "--every", "1", "--out", "{tmp}/probes.csv", *TINY, "algorithm=shacpp", "task.n_agents=1",
         *SHACPP_MODELS, "experiment.save_folder={tmp}"],
        "probes.csv",
        rf"^window,frames,eval_return,policy_cos_0.0-0.15,.*,noflag_grad_norm_first,.*,noflag_actor_cos_0.6-3.0,"
        rf"noflag_vs_full,.*,predicted_rewarded,predicted_on_eaten,predicted_elsewhere,"
        rf"rewarded_window,rewarded_cache\n1,\d+,nan,.*\n2,\d+,{N},",
    ),
    "dispersion_probes.py goal": (  # navigation, against each agent's own goal
        ["--target", "goal", "--windows", "2", "--every", "1", "--out", "{tmp}/probes.csv", *TINY, "algorithm=shacpp",
         *SHACPP_MODELS, "experiment.save_folder={tmp}"],
        "probes.csv",
        rf"^window,frames,eval_return,policy_cos_0.0-0.15,.*,reward_part_cos_.*,policy_vs_velocity,policy_vs_outward,"
        rf"actor_vs_outward,boot_vs_outward,reward_part_vs_outward,policy_norm,.*,reward_corr,.*"
        rf"\n1,\d+,nan,.*\n2,\d+,{N},",
    ),
    "dispersion_probes.py none": (  # SHAC on a task without a target direction: the actor's two parts only
        ["--target", "none", "--windows", "2", "--every", "1", "--out", "{tmp}/probes.csv", *TINY, "algorithm=shac",
         "task=vmas/balance_centred", "experiment.save_folder={tmp}"],
        "probes.csv",
        rf"^window,frames,eval_return,boot_reward_cos,boot_norm,reward_part_norm,grad_norm_first,grad_norm_last,"
        rf"grad_norm_median,grad_norm_max,rewarded_window\n1,\d+,nan,{N},",
    ),
    "transport_contact_fit.py": (
        ["--contact-share", "0.5", "--transitions", "200", "--held-out", "100", "--steps", "2", "--minibatch", "32",
         "--touching-weight", "10", "--scenario", "penetration_observation=true"],
        "stdout", row("0.5", "10", *[N] * 8),
    ),
    "transport_goal_face.py": (  # SHAC+: the window holds the simulator's per-step actions
        ["--every", "1", "--out", "{tmp}/goal_face.csv", *TINY, "algorithm=shacp", "task=vmas/transport_differentiable",
         "task.n_agents=3", "+task.approach_reward=true", *MODELS, "experiment.max_n_iters=2",
         "experiment.max_n_frames=null", "experiment.save_folder={tmp}"],
        "goal_face.csv",
        # the potential recomputed from the observations matches the env's reward to 1e-4 (its last column)
        rf"^window,frames,eval_return,away_share,towards_share,grad_into_face,.*,step_norm_ratio,likelihood_into_face,"
        rf"exact_into_face,.*,"
        rf"potential_value_error\n1,\d+,nan,{N},{N},.*,(?:0\.0|\d(?:\.\d+)?e-0[5-9])$",
    ),
    "first_actor_steps.py": (
        ["--algorithm", "shac", "--task", "vmas/navigation", "--iters", "2", "--episodes", "2", "--steps", "4",
         "--label", "tiny", "--reward-part", "agent_collisions", "--detach-lidar", "--detach-observations", "--out",
         "{tmp}/first.md", "--override", *TINY, "experiment.save_folder={tmp}"],
        "first.md", row("shac", "vmas/navigation", "shacpp_cpu", "tiny", "`.*`", rf"{N} \[{N}\]",
                        rf"{N} \[{N}\], {N} \[{N}\]"),
    ),
    "gradient_ablation_run.py": (
        ["--detach-lidar", "--open-loop", "--hide-block", "lidar=6:18", "--hide-from", "reward", "--hide-from",
         "critic", "algorithm=shacp", "experiment=shacpp_cpu", "task=vmas/navigation", *TINY, *MODELS,
         "experiment.max_n_iters=2", "experiment.evaluation=false", "hydra.run.dir={tmp}"],
        "**/scalars/train_agents_actor_grad_norm.csv", rf"^1,{N}$",
    ),
    "learning_comparison.py": (  # known answer: SHAC++ reaches 0.9 after 512 and 768 frames, MAPPO never; at 512
        # frames SHAC++'s returns 0.95 and 0.6 are both above MAPPO's 0.3 and 0.4
        ["n=1/SHAC++={runs}/shacpp_s*", "n=1/MAPPO={runs}/mappo_s*", "--target", "0.9", "--at", "512", "--baseline",
         "MAPPO", "--out", "{tmp}"],
        "summary.md", row("n=1", "SHAC\\+\\+", "2", r"1 ± 0k \(2/2\)", "0.77 ± 0.25", "0k / 0k",
                          "U = 4 of 4, p = 0.333", "U = 4 of 4, p = 0.333"),
    ),
    "learning_comparison.py without early stops": (  # seed 0 ended at 512 frames: no return at 768, as MAPPO's
        ["n=1/SHAC++={runs}/shacpp_s*", "n=1/MAPPO={runs}/mappo_s*", "--target", "0.9", "--at", "768",
         "--no-early-stop", "--plot-frames", "512", "--out", "{tmp}"],
        "summary.md", row("n=1", "SHAC\\+\\+", "2", r"1 ± 0k \(2/2\)", "0.92", "0k / 0k"),
    ),
    "learning_comparison.py on an info term": (  # EvaluationInfo's sums: seed 1 reaches 0.9 at 512, seed 0 never
        ["n=1/SHAC++={runs}/shacpp_s*", "--info", "task_reward", "--target", "0.9", "--at", "512", "--out", "{tmp}"],
        "summary.md", row("n=1", "SHAC\\+\\+", "2", r"1k \(1/2\)", "0.65 ± 0.42", "0k / 0k"),
    ),
    "learning_curves.py": (
        ["--title", "tiny", "--out", "{tmp}", "a={runs}/curve"],
        "summary.md", row("a", "2", "128", "0.2", "0.100", "0.500", "0.500", "0"),
    ),
    "model_step_cost.py": (
        ["--minibatch", "8", "--horizon", "2", "--n-agents", "2", "--window-envs", "2", "--repeats", "1", "--out",
         "{tmp}/cost.md"],
        "cost.md", row("actor", "window of 2 envs x 2 steps", r"spliced transition \(default\)", "dense fused", N,
                       N + "x"),
    ),
    "reward_model_fit.py": (  # Huber's loss, a reward per agent, rewarded oversampled, the cosines to goal and away
        ["--task", "vmas/navigation", "--frames", "512", "--steps", "2", "--huber-delta", "0.05", "--goal", "4:6",
         "--velocity", "2:4", "--position", "0:2", "--near", "10", "--rewarded-share", "0.5", "task.n_agents=2",
         "algorithm.reward_centralised=false"],
        "stdout", row("2", N, N, N, N, N),
    ),
    "reward_model_fit.py without a reward": (  # seed 0's 512 frames of dispersion hold no reward: uniform minibatches
        ["--task", "vmas/dispersion_paper", "--frames", "512", "task.n_agents=1", "--steps", "2"],
        "stdout", r"^rewarded \(an agent's reward nonzero\): 0 training transitions, .*\n(?:.*\n)*\| 2 \| nan \|",
    ),
    "sampling_reset.py": (
        ["--num-envs", "4", "--repeats", "1"],
        "stdout", row("4", N, N, N + "×", N, N, "True"),
    ),
    "transport_shaping_fit.py": (  # the hard switch (β = 0) and a blend, at tiny sizes
        ["--blend", "0", "0.05", "--num-envs", "8", "--steps", "10", "--fit-steps", "5", "--scripted-steps", "3",
         "--out", "{tmp}/fit.md"],
        "fit.md", row("0.05", N + "%", N, rf"{N} \({N}\)", rf"{N} \({N}\)", rf"(–|{N} \({N}\))", N),
    ),
    "shac_window.py": (
        ["--task", "transport", "--n-agents", "2", "--num-envs", "4", "--window", "4", "--repeats", "1", "--threads",
         "1", "--out", "{tmp}/window.md"],
        "window.md", row(r"shac window \(collect \+ loss \+ backward \+ Adam step\)", N, N, N),
    ),
    "shacpp_gradient_alignment.py epochs": (  # every table: blocks, cut gradient, closed-loop terms, cut agent-steps
        ["--task", "sampling", "--n-agents", "2", "--num-envs", "4", "--window", "4", "--data-windows", "2",
         "--eval-windows", "3", "--epochs", "0", "1", "--cache-size", "200", "--minibatch", "16",
         "--world-model-steps", "2", "--feature-block", "pos=0:2", "--cut-block", "pos=0:2", "--loop-terms",
         "--trusted-error-ratio", "2", "--threads", "1"],
        # the main table's row, then the cut agent-steps' (the kept steps' share of changed positions is a number)
        "stdout", row("1", PM, PM, PM, N, N, N, N, N, N)[:-1] + r"\n(?:.*\n)*" + row("1", PM, PM, N, f"(?:{N}|nan)", N),
    ),
    "shacpp_gradient_alignment.py training": (  # SHAC++ trains 10 windows (one cool-down), then the probe
        ["--task", "sampling", "--n-agents", "2", "--num-envs", "4", "--window", "4", "--train-windows", "10",
         "--train-envs", "4", "--probe-every", "10", "--eval-windows", "3", "--cache-size", "200", "--minibatch",
         "16", "--world-model-steps", "2", "--open-loop", "--world-periodic", "0:1.0", "--threads", "1"],
        "stdout", row(r"10 \(0k\)", N, PM, PM, PM, N, N, N, N, N, N),
    ),
    "shacpp_gradient_alignment.py one-pass training": (  # the one-pass model on its own passes, minibatch and cut
        ["--task", "sampling", "--n-agents", "2", "--num-envs", "4", "--window", "4", "--train-windows", "10",
         "--train-envs", "4", "--probe-every", "10", "--eval-windows", "3", "--cache-size", "200", "--minibatch",
         "16", "--world-rollout", "one_pass", "--world-cache-size", "40", "--world-bins", "2", "--model-epochs", "2",
         "--world-minibatch", "3", "--world-model-max-steps", "2", "--model-steps", "2", "--world-gradient", "2",
         "--threads", "1"],
        "stdout", row(r"10 \(0k\)", N, PM, PM, PM, N, N, N, N, N, N),
    ),
    "shacpp_profile.py": (
        ["--model-train-every", "2", "--n-agents", "2", "--top", "3", "--save-folder", "{tmp}", "--out",
         "{tmp}/profile.md", "--override", *TINY, "algorithm.world_model_steps=2", "algorithm.model_epochs=1",
         "algorithm.cache_size=1000"],
        "profile.md", row("cool-down: world model", N, r"\d+%", "1"),
    ),
    "transition_model_fit.py": (
        ["--task", "navigation", "--n-agents", "2", "--transitions", "256", "--minibatch", "32", "--steps", "2",
         "--block", "pos=0:2", "--block", "lidar=6:18", "--one-step", "--sensor-gain", "0:2", "6:18",
         "--gain-ignores", "2:4"],
        "stdout", row("2", N, f"{N} / {N}", N, f"{N} / {N}", N, N),
    ),
    "transition_model_fit.py periodic": (  # balance's line rotation read as cos/sin and learned across its cut
        ["--task", "balance", "--n-agents", "3", "--transitions", "256", "--minibatch", "32", "--steps", "2",
         "--block", "pos=0:2", "--periodic", "15:3.141592653589793"],
        "stdout", row("2", N, f"{N} / {N}"),
    ),
    "scalar_blocks.py": (  # known answer: norms 0.5, 1, ..., 64 over 8 collections of 32 frames, in blocks of 64
        ["{runs}/shacpp_s0", "--scalars", "train_agents_actor_grad_norm", "--block", "64", "--frames-per-batch", "32"],
        "stdout", row("64-128", "3"),
    ),
    "scalar_blocks.py (frames from the hydra config)": (
        ["{runs}/shacpp_s1", "--scalars", "train_agents_actor_grad_norm", "--block", "128"],
        "stdout", row("0-128", "1.875"),
    ),
    "world_model_scaling.py": (  # a failed worker leaves "failed (exit n)" in its cells, not a failed script
        ["--sweep", "2:1", "--horizon", "2", "--repeats", "1", "--output", "{tmp}/scaling.md"],
        "scaling.md", row("2", "1", "3", *[N] * 7, *[N + "×"] * 2, N, N, N + "×"),
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Result folders for the scripts that read them: two BenchMARL runs each of SHAC++ (evaluations every 256
    frames, solving 0.9 at 512 and 768; 8 logged actor gradient norms 0.5, 1, ..., 64; an evaluation info term
    ``task_reward`` reaching 0.9 at 512 in seed 1 only; batches of 32 frames in the hydra config) and MAPPO (below 0.9) on
    dispersion n=1, and an example script's ``curve.csv`` of 2 windows."""
    root, mlp, dispersion = tmp_path_factory.mktemp("runs"), MlpConfig.get_from_yaml(), PaperVmasTask.DISPERSION
    task_rewards = [[0.1, 0.35], [0.2, 0.95, 0.97]]  # EvaluationInfo's "iteration,sum" per evaluation
    for seed, returns in enumerate([[[0.2], [0.95]], [[0.5], [0.6], [0.92]]]):
        run = synthetic_run(root / f"shacpp_s{seed}" / "run", ShacppConfig(), dispersion, 1, mlp, seed, returns)
        scalars = run / run.name / "scalars"  # BenchMARL's CSV logger: "iteration,value" per collection
        scalars.mkdir(parents=True)
        (scalars / "eval_agents_info_task_reward.csv").write_text(
            "".join(f"{8 * i + 7},{value}\n" for i, value in enumerate(task_rewards[seed]))
        )
        (scalars / "counters_total_frames.csv").write_text("".join(f"{i},{32 * (i + 1)}\n" for i in range(8)))
        (scalars / "train_agents_actor_grad_norm.csv").write_text("".join(f"{i},{2 ** i / 2}\n" for i in range(8)))
        (root / f"shacpp_s{seed}" / ".hydra").mkdir()  # what a hydra run of benchmarl.run leaves beside its run
        (root / f"shacpp_s{seed}" / ".hydra" / "config.yaml").write_text(
            "experiment:\n  on_policy_collected_frames_per_batch: 32\n"
        )
    for seed, returns in enumerate([[[0.1], [0.3]], [[0.2], [0.4]]]):
        synthetic_run(root / f"mappo_s{seed}" / "run", MappoConfig.get_from_yaml(), dispersion, 1, mlp, seed, returns)
    (root / "curve").mkdir()
    (root / "curve" / "curve.csv").write_text(
        "windows,frames,seconds,eval_return,skipped_actor_steps\n1,64,6,0.1,0\n2,128,12,0.5,0\n"
    )
    return root


def run_on_checkpoint(script: str, overrides: list[str], tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    """Trains one iteration of ``python -m benchmarl.run <overrides>`` into ``tmp_path``, checkpointed after it, and
    runs ``benchmarks/<script> --checkpoint <it> <options> <overrides>`` on it; asserts that both succeed."""
    train = [sys.executable, "-m", "benchmarl.run", *overrides, "experiment.max_n_iters=1",
             "experiment.checkpoint_interval=64", f"experiment.save_folder={tmp_path}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(train, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (checkpoint,) = tmp_path.rglob("checkpoint_64.pt")
    command = [sys.executable, str(REPO / "benchmarks" / script), "--checkpoint", str(checkpoint), *options, *overrides]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_arena_walls_reads_a_checkpoint_and_writes_its_table(tmp_path: Path):
    """``arena_walls.py`` restores a real (tiny) SHAC++ dispersion checkpoint and tabulates both kinds of actions, and
    the return's gradient w.r.t. the actions on a collection's windows."""
    overrides = [*TINY, "task=vmas/dispersion_paper", "algorithm=shacpp", *SHACPP_MODELS]
    result = run_on_checkpoint("arena_walls.py", overrides, tmp_path, "--windows", "1", "--margin", "0.95")
    for actions in ("deterministic", "random"):
        assert re.search(row(actions, r"\d+-\d+", *[N] * 7), result.stdout, re.MULTILINE), result.stdout
        assert re.search(row(actions, "episode", *[""] * 6, N), result.stdout, re.MULTILINE), result.stdout
    # A margin of 0.95 of the half-width 1: the agents start 0.05 from the centre and leave it: both sets have elements.
    for elements in ("at its wall", "elsewhere"):
        assert re.search(row(elements, *[N] * 5), result.stdout, re.MULTILINE), result.stdout


def test_transport_contacts_classifies_each_face_of_the_package():
    """Closed form: the package (half-side 0.075) at the origin, its goal along +x, agents of radius 0.03 behind it,
    in front of it 0.02 off the package-goal line, beside it, at a corner's diagonal, and away from it."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from transport_contacts import contact_faces

    agents = torch.tensor([[-0.1, 0.0], [0.1, 0.02], [0.0, -0.1], [0.09, 0.09], [0.5, 0.0]])
    touching, push, offset = contact_faces(agents, torch.tensor([[1.0, 0.0]]).expand(5, 2), 0.075, 0.03, 0.0)
    assert touching.tolist() == [True, True, True, True, False]
    # Pushes along -n: towards the goal from behind, away from the front, across from the side, at 45° off the corner.
    torch.testing.assert_close(push[:4], torch.tensor([1.0, -1.0, 0.0, -(0.5**0.5)]))
    torch.testing.assert_close(offset, torch.tensor([0.0, 0.02, 0.1, 0.09, 0.0]))


def test_transport_contacts_reads_the_approach_potentials_pull_at_the_goal_face():
    """Closed form: with the hard switch (blend 0) an agent touching the goal face at half a contact distance c off
    the line is pulled to the waypoint beside the push point, (-c, 2c) from (c, c/2): into the face 0.8, along it 0.6;
    on the line, any blend pulls it straight into the face."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from transport_contacts import goal_face_pull

    (on_line, half) = goal_face_pull(0.0, [0.0, 0.5])
    assert (half["into the face"], half["along it"]) == pytest.approx((0.8, 0.6), abs=1e-5)
    assert (on_line["into the face"], on_line["along it"]) == pytest.approx((0.5**0.5, 0.5**0.5), abs=1e-5)
    (blended,) = goal_face_pull(0.05, [0.0])
    assert (blended["into the face"], blended["along it"]) == pytest.approx((1.0, 0.0), abs=1e-5)


def test_transport_goal_face_reads_the_gradient_and_the_step_at_each_face():
    """Closed form: the package at the origin, its goal along +x; one agent on its goal face (pushing it away) whose
    descent direction and mean's change both point back out of the face (+x), one behind it pushing it to the goal,
    one far from it; the likelihood-ratio descent's share into the face, summed over the agents pushing it away."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from transport_goal_face import goal_face_columns

    agents = torch.tensor([[0.1, 0.0], [-0.1, 0.0], [0.5, 0.5]])
    observation = torch.zeros(1, 3, 11)
    observation[..., 4:6] = torch.tensor([-1.0, 0.0])  # package - goal
    observation[0, :, 6:8] = -agents  # package - agent
    descent = torch.tensor([[[2.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    before = torch.tensor([[[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    after = before + torch.tensor([[[0.5, 0.0], [0.0, 0.25], [0.0, 0.25]]])
    likelihood = torch.tensor([[[3.0, 4.0], [-5.0, 0.0], [0.0, 7.0]]])  # -u = -x: 3 of 5 out of the face
    columns = goal_face_columns(observation, descent, before, after, 0.075, 0.03, 0.0, likelihood=likelihood)
    expected = {
        "away_share": 1 / 3, "towards_share": 1 / 3, "grad_into_face": -1.0, "grad_along_face": 0.0,
        "towards_grad_to_goal": 1.0, "grad_norm_ratio": 2.0, "mean_into_face": 1.0, "step_into_face": -1.0,
        "step_backs_off": 1.0, "step_follows_grad": 1.0, "step_follows_grad_all": 1.0, "step_norm_ratio": 2.0,
        "likelihood_into_face": -0.6,
    }  # fmt: skip
    assert columns == pytest.approx(expected, abs=1e-6)


def test_transport_goal_face_summarises_a_probe_by_blocks_of_frames():
    """Known answer: windows at 2, 4 and 6 (thousand) frames in blocks of 4k: the first block's median of 0.2 and 0.4
    (torch's lower middle), a NaN window left out of the column it lacks; the second block's one window."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from transport_goal_face import block_medians

    rows = [
        {"frames": "2000", "eval_return": "nan", "away_share": "0.2", "grad_into_face": "nan"},
        {"frames": "4000", "eval_return": "0.5", "away_share": "0.4", "grad_into_face": "-0.5"},
        {"frames": "6000", "eval_return": "0.7", "away_share": "0.1", "grad_into_face": "0.9"},
    ]
    first, second = block_medians(rows, 4000)
    assert first["frames"] == "0-4k" and first["windows"] == 2 and math.isnan(first["return at start"])
    assert (first["away_share"], first["grad_into_face"]) == pytest.approx((0.2, -0.5))
    assert second == pytest.approx({"frames": "4-8k", "return at start": 0.7, "windows": 1, "away_share": 0.1,
                                    "grad_into_face": 0.9})  # fmt: skip


def test_transport_goal_face_rebuilds_vmas_transitions_and_keeps_vmas_random_stream():
    """VMAS's step from states rebuilt from a real env's observations reproduces that env's next observations, the
    pushing agent's response to moving into the package is VMAS's contact (non-zero), and VMAS's module-wide random
    stream (``vmas.simulator.environment.environment.Environment.vmas_random_state``, private) is as it was before."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from transport_goal_face import vmas_stream_kept, vmas_transitions
    from vmas.simulator.environment import environment as vmas_environment

    config = {"n_agents": 2, "approach_reward": True}
    env = vmas.make_env(DifferentiableTransport(), num_envs=4, continuous_actions=True, seed=1, **config)
    package = env.scenario.packages[0]
    env.scenario.world.agents[0].set_pos(package.state.pos + torch.tensor([0.1, 0.0]), batch_index=None)
    observation = torch.stack([env.scenario.observation(agent) for agent in env.scenario.world.agents], 1)
    action = torch.tensor([[-1.0, 0.0], [0.5, 0.5]]).expand(4, 2, 2)
    next_observation = torch.stack(env.step(list(action.unbind(1)))[0], 1)
    stream = vmas_environment.Environment.vmas_random_state
    before = [state.clone() if isinstance(state, torch.Tensor) else state for state in stream]
    with torch.enable_grad(), vmas_stream_kept():
        transitions = vmas_transitions(
            config, lambda o, a: o + a.sum(-1, keepdim=True), observation, action, torch.zeros(4, dtype=torch.long),
            torch.tensor([[-1.0, 0.0]]).expand(4, 2),
        )  # fmt: skip
    assert torch.allclose(transitions["next"], next_observation, atol=1e-5)
    assert (transitions["exact_press"][:, 0:2].norm(dim=-1) > 1).all()  # the contact pushes the agent back
    assert torch.equal(stream[0], before[0]) and stream[2] == before[2]


def test_transport_contact_fit_weights_agent_steps_by_their_share_of_the_weights():
    """The weights are relative (the loss is divided by their sum): equal weights fit as no weights do, weights (1, 0)
    over two agents as (5, 0) do, and those not as no weights do (agent 1's errors left out)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from transport_contact_fit import fit

    generator = torch.Generator().manual_seed(0)
    data = (torch.randn(64, 2, 5, generator=generator), torch.randn(64, 2, 2, generator=generator),
            torch.randn(64, 2, 5, generator=generator))  # fmt: skip
    initial = TransitionWorldModel(5, 2)

    def fitted(weight: torch.Tensor | None) -> list[torch.Tensor]:
        model = copy.deepcopy(initial)
        fit(model, data, 3, 16, 1e-2, torch.Generator().manual_seed(1), weight)
        return list(model.parameters())

    for plain, weighted in zip(fitted(None), fitted(torch.full((64, 2), 7.0))):
        assert torch.allclose(plain, weighted, atol=1e-6)
    first_only, scaled = fitted(torch.tensor([1.0, 0.0]).expand(64, 2)), fitted(torch.tensor([5.0, 0.0]).expand(64, 2))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(first_only, scaled))
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(first_only, fitted(None)))


def test_transport_contacts_reads_a_checkpoint_and_writes_its_table(tmp_path: Path):
    """``transport_contacts.py`` restores a real (tiny) SHAC++ checkpoint of transport with the approach potential
    paid, tabulates both kinds of actions by phase (the task return from the agents' info) and the episode's return,
    and the potential's pull at the goal face."""
    overrides = [*TINY, "task=vmas/transport_differentiable", "+task.approach_reward=true", "+task.approach_blend=0.05",
                 "algorithm=shacpp", *SHACPP_MODELS]  # fmt: skip
    result = run_on_checkpoint("transport_contacts.py", overrides, tmp_path)
    for actions in ("deterministic", "random"):
        phase = row(actions, r"\d+-\d+", *[N] * 4, *[f"(?:{N}|nan)"] * 2, N)  # NaN: nobody pushes it away
        assert re.search(phase, result.stdout, re.MULTILINE), result.stdout
        assert re.search(row(actions, "episode", *[""] * 6, N), result.stdout, re.MULTILINE), result.stdout
    assert re.search(row("0.50", N, N), result.stdout, re.MULTILINE), result.stdout  # the potential's pull


@pytest.mark.parametrize("case", list(CASES))
def test_script_runs_and_writes_its_table(case: str, tmp_path: Path, runs: Path):
    args, output, pattern = CASES[case]
    script = REPO / "benchmarks" / case.split()[0]
    command = [sys.executable, str(script), *(arg.format(tmp=tmp_path, runs=runs) for arg in args)]
    # One thread: at these sizes more threads only contend with whatever else the machine runs.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    if output == "stdout":
        text = result.stdout
    else:
        (path,) = tmp_path.glob(output)
        text = path.read_text()
    assert re.search(pattern, text, re.MULTILINE), text[-3000:]


def test_gradient_alignment_refuses_a_training_schedule_its_epoch_stages_would_ignore():
    """``--model-epochs``/``--model-steps`` shape the trainings along ``--train-windows``; with ``--epochs`` stages
    they would be ignored, so the script stops and names the fix."""
    script = str(REPO / "benchmarks" / "shacpp_gradient_alignment.py")
    command = [sys.executable, script, "--task", "sampling", "--epochs", "0", "1", "--model-steps", "2"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "add --train-windows" in result.stderr, result.stderr[-3000:]
