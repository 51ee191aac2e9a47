#!/bin/bash
# The GPU checks of the SHAC++ issues, as one prepared command for a lent GPU machine (python3 with CUDA torch, no
# network; BenchMARL & co. carried as wheels in .whl/, see the device tool's notes). Writes under $OUT:
#   device_check.md  mappo/shac/shacp/shacpp a few windows with every BenchMARL device on cuda: what is not on the GPU
#   throughput.md    benchmarl_throughput.py at the paper preset on the GPU (SHAC++ and MAPPO), caches full
#   runs.tgz         transport n=3 at the paper's scale (512 envs x 32 steps): SHAC, SHAC++ and MAPPO, side by side
#                    for LEARN_S seconds each (csv logs, evaluation every 10 windows on 512 envs)
#   batch/           with RUNS=<file>: its CPU runs (benchmarks/parallel_runs.sh, one core each, BATCH_JOBS at a time,
#                    LEARN_S seconds each) beside the learning runs, on TASK (default transport; n = N_AGENTS, 3)
# Usage there: bash benchmarks/gpu_session.sh   (LEARN_S=270; PHASES="throughput learn check batch" picks phases)
set -u
OUT=${OUT:-/tmp/gpu_out}; LEARN_S=${LEARN_S:-270}; PHASES=${PHASES:-throughput learn check}; mkdir -p "$OUT" /tmp/runs
TASK=${TASK:-transport}; N_AGENTS=${N_AGENTS:-3}; BATCH_JOBS=${BATCH_JOBS:-12}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
[ -e torchrl_shacpp/benchmarl_configs ] || ln -s ../benchmarl_configs torchrl_shacpp/benchmarl_configs
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchrl, tensordict, benchmarl, vmas, torchrl_shacpp; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || exit 1
ON_GPU="experiment.sampling_device=cuda experiment.train_device=cuda experiment.buffer_device=cuda"

phase() { [[ " $PHASES " == *" $1 "* ]]; }
if phase throughput; then echo "== throughput (alone on the GPU)"; date
timeout 180 python3 benchmarks/benchmarl_throughput.py --iters 21 --steady-state --runs shacpp_paper::shacpp \
    shacpp_paper::mappo --override $ON_GPU --output "$OUT/throughput.md" 2>&1 | tail -5
fi

echo "== learning runs (background) and the device check"; date
export OMP_NUM_THREADS=4  # four processes share 16 cores (one each beside a batch)
phase batch && export OMP_NUM_THREADS=1
phase learn && for algorithm in shac shacpp mappo; do
    name=${TASK}_n${N_AGENTS}_$algorithm
    timeout "$LEARN_S" python3 -m torchrl_shacpp.benchmarl.run algorithm=$algorithm task=vmas/$TASK task.n_agents=$N_AGENTS \
        model=layers/transformer model@critic_model=layers/transformer experiment=shacpp_paper $ON_GPU seed=0 \
        experiment.evaluation_interval=163840 experiment.evaluation_episodes=512 \
        experiment.evaluation_deterministic_actions=true experiment.checkpoint_interval=0 "experiment.loggers=[csv]" \
        hydra.run.dir=/tmp/runs/$name > /tmp/runs/$name.log 2>&1 &
done
phase batch && JOBS=$BATCH_JOBS TIMEOUT_S=$LEARN_S OUT_DIR=/tmp/runs/batch bash benchmarks/parallel_runs.sh "$RUNS" &
phase check && timeout 240 python3 benchmarks/device_check.py --device cuda --iters 4 --out "$OUT/device_check.md" \
    --algorithms mappo shac shacp shacpp \
    --override shacp:algorithm.model_train_every=2 shacpp:algorithm.model_train_every=2 2>&1 | grep -v "it/s\]" | tail -40
wait; date
for log in /tmp/runs/*.log; do echo "== $log"; grep -v "it/s\]\|s/it\]" "$log" | tail -4; done
for log in /tmp/runs/batch/*/log.txt; do echo "$log: $(grep -o 'after [0-9]* frames' "$log") $(tail -1 "$log")"; done 2>/dev/null
tar czf "$OUT/runs.tgz" -C /tmp runs
