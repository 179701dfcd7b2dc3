#!/usr/bin/env bash
# The speed issue's check on a lent GPU machine, in one call of the library's `device`:
# the GPU tests, and benchmarks/meta_iteration.py for Navigation2D (pytorch-maml-rl's
# 2x64 tanh) and HalfCheetahVel at the paper's scale (40 x 20 x 200), learner on cpu and
# on cuda in the same process tree, so the CPU/GPU ratio comes from one run on one
# machine. Prepare the wheels first (benchmarks/gpu_wheels.sh), then call `device run`
# with carry [".whl"] and timeout_s 540; everything lands in $OUT (192 s of command time on
# a 16-core H200 machine, 2026-11-28; the machine's start comes on top).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
source benchmarks/device_env.sh
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch, mujoco; print('torch', torch.__version__, 'cuda', \
torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '', \
'mujoco', mujoco.__version__)"
    nproc
} 2>&1 | tee "$OUT/machine.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_device.py tests/test_device_rl.py 2>&1 | tee "$OUT/gpu_tests.log"
python3 benchmarks/meta_iteration.py --only nav-tanh64,cheetah --devices cpu,cuda \
    --iterations 3 --cheetah-iterations 1 --out "$OUT/meta_iteration_gpu.json" 2>&1 \
    | tee "$OUT/meta_iteration_gpu.log"
