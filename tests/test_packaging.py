"""The wheel carries the BenchMARL configs: after a non-editable install, ``algorithm=shacpp`` resolves, and so do the
comparison's config with its scale and training presets and the task presets (``+preset=...``)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

REPOSITORY = Path(__file__).parents[1]

RESOLVE = textwrap.dedent(
    """
    import torchrl_shacpp
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="benchmarl.conf", version_base=None):
        config = compose(config_name="config", overrides=["algorithm=shacpp", "task=vmas/dispersion_paper"])
        comparison = compose(config_name="comparison", overrides=["algorithm=shacpp", "task=vmas/transport"])
        preset = compose(config_name="config", overrides=["+preset=dispersion_n3_shacpp"])
    print(torchrl_shacpp.__file__)
    envs = comparison.experiment.on_policy_n_envs_per_worker
    print(config.algorithm.world_bins, config.task.agent_start_radius, envs, preset.algorithm.action_mean_coef_final)
    """
)


def test_wheel_installed_in_a_fresh_virtualenv_resolves_the_algorithms(tmp_path: Path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
         str(REPOSITORY)],
        check=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("torchrl_shacpp-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())  # fmt: skip
    # The dependencies come from this environment's site-packages, read as a plain path: its editable install of
    # torchrl_shacpp (a .pth hook) stays out, so only the wheel's copy can be imported.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        check=True, timeout=300,
    )  # fmt: skip
    result = subprocess.run([python, "-c", RESOLVE], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    location, values = result.stdout.strip().splitlines()[-2:]
    assert Path(location).is_relative_to(site)
    assert values == "25 0.05 8 0.1"  # the comparison's SHAC++ trains under experiment=shacpp_cpu
