"""The comparison's results from a folder of BenchMARL runs: Table 1 and the raw table (Markdown and CSV), Fig. 1 and
Fig. 2 (PNG), BenchMARL's marl-eval plots; written into the folder (or ``--out``) and the tables printed.

    python -m torchrl_shacpp.benchmark.results multirun/comparison_cpu [--out results/]

The comparison's multirun writes them at its end; this command makes them from any folder of BenchMARL runs made
with ``experiment.create_json=true`` (a comparison still running or cut short, ``benchmarl.run`` outputs).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from torchrl_shacpp.benchmark.figures import figure1, figure2, marl_eval_figures
from torchrl_shacpp.benchmark.records import RECORD, RunRecord
from torchrl_shacpp.benchmark.runs import load_runs
from torchrl_shacpp.benchmark.tables import normalised_markdown, normalised_table, raw_markdown, raw_table, to_csv


def write_results(folder: Path, out: Path | None = None) -> list[Path]:
    """Writes the tables and figures of the runs under ``folder`` into ``out`` (default: ``folder``), prints the
    tables, and returns the files written.

    Raises:
        SystemExit: no run under ``folder`` evaluated (:func:`~torchrl_shacpp.benchmark.runs.load_runs`).
    """
    runs = load_runs(folder)
    out = folder if out is None else out
    out.mkdir(parents=True, exist_ok=True)
    normalised, raw = normalised_table(runs), raw_table(runs)
    texts = {
        "table1.md": normalised_markdown(*normalised),
        "table1.csv": to_csv(*normalised),
        "raw.md": raw_markdown(*raw) + _skipped(folder),
        "raw.csv": to_csv(*raw),
    }
    for name, text in texts.items():
        (out / name).write_text(text)
    print(f"\nTable 1 ({len(runs)} runs under {folder})\n\n{texts['table1.md']}\n{texts['raw.md']}")
    written = [out / name for name in texts]
    if importlib.util.find_spec("matplotlib") is None:
        print("[comparison] the figures need matplotlib: pip install matplotlib")
    else:
        figures = {"figure1.png": figure1, "figure2.png": figure2}
        written += [out / name for name, plot in figures.items() if plot(runs, out / name)]
        written += marl_eval_figures(runs, out)
    print("[comparison] wrote " + ", ".join(str(path) for path in written))
    return written


def _skipped(folder: Path) -> str:
    """The grid points the comparison skipped under ``folder``: a line per configuration, with its seeds."""
    seeds: dict[tuple[str, str], list[int]] = {}
    for path in sorted(folder.rglob(RECORD)):
        record = RunRecord.load(path.parent)
        if record.status == "skipped":
            seeds.setdefault((record.configuration, record.reason), []).append(record.seed)
    lines = [f"- {run} (seeds {', '.join(map(str, sorted(s)))}): {why}" for (run, why), s in sorted(seeds.items())]
    return "\nSkipped:\n\n" + "\n".join(lines) + "\n" if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a folder of BenchMARL runs (searched recursively)")
    parser.add_argument("--out", type=Path, help="where to write the tables and figures (default: the folder)")
    args = parser.parse_args()
    write_results(args.folder, args.out)


if __name__ == "__main__":
    main()
