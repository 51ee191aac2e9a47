#!/bin/bash
# Learning runs from a list, JOBS at a time, one torch thread each: the seeds of a comparison on a machine with many
# cores (e.g. a lent GPU machine's 16), or the 2 of this one. Each line of RUNS_FILE is a run name then the
# overrides of `python -m torchrl_shacpp.benchmarl.run` (blank lines and lines starting with # are skipped):
#   dispersion_n1_shacpp_s3 algorithm=shacpp task=vmas/dispersion_paper task.n_agents=1 experiment=shacpp_cpu seed=3
# Each run writes csv logs under OUT_DIR/<name>/ (its hydra folder) and its output to OUT_DIR/<name>/log.txt, and is
# stopped after TIMEOUT_S seconds (its last evaluation stays in its csv; learning_comparison.py reads it as such).
# Usage: JOBS=14 TIMEOUT_S=540 OUT_DIR=$OUT/runs bash benchmarks/parallel_runs.sh RUNS_FILE
set -u
RUNS_FILE=$1; JOBS=${JOBS:-2}; TIMEOUT_S=${TIMEOUT_S:-1800}; OUT_DIR=${OUT_DIR:-runs}
mkdir -p "$OUT_DIR"
while read -r name overrides <&3; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    mkdir -p "$OUT_DIR/$name"
    (
        start=$(date +%s)
        # shellcheck disable=SC2086  # the overrides are words
        OMP_NUM_THREADS=1 timeout "$TIMEOUT_S" python3 -m torchrl_shacpp.benchmarl.run $overrides \
            "experiment.loggers=[csv]" experiment.render=false "hydra.run.dir=$OUT_DIR/$name" \
            < /dev/null > "$OUT_DIR/$name/log.txt" 2>&1
        echo "rc=$? wall=$(($(date +%s) - start))" >> "$OUT_DIR/$name/log.txt"
    ) &
done 3< <(grep -v '^\s*\(#\|$\)' "$RUNS_FILE")
wait
