#!/usr/bin/env bash
# Continue locomotion runs on a lent GPU machine, in one call of the library's `device`:
#
#     bash benchmarks/device_train.sh GROUPS MINUTES [JOBS] [PHYSICS_THREADS]
#
# with carry [".whl"] (benchmarks/gpu_wheels.sh) and timeout_s about MINUTES * 60 + 120.
# It resumes the runs of GROUPS (comma-separated, as `locomotion.py train --only`) from
# the checkpoints in the working tree, JOBS at a time (default 6, each with
# PHYSICS_THREADS threads, default 2, and its learner on the GPU: the runs' `device: auto`),
# stops them cleanly after MINUTES, and packs their directories into $OUT/runs.tar.gz.
# Back here: `tar -xzf FILES_AT/runs.tar.gz -C benchmarks/runs`, then `locomotion.py
# status`, and commit benchmarks/runs/. A run so carried over two machines continues
# from the same state, not bitwise (the machines round differently; README, Devices).
# Measured on an H200 machine (16 cores): two HalfCheetahDir runs side by side, 7 physics
# threads each, 3.3 s per iteration (the 2-core machine here: 19 s).
set -uo pipefail
ONLY=${1:?groups}
MINUTES=${2:?minutes}
JOBS=${3:-6}
PHYSICS_THREADS=${4:-2}
OUT=${OUT:-/tmp/device_train}
source benchmarks/device_env.sh
nproc | tee "$OUT/machine.txt"
python3 -c "import torch; print(torch.__version__, torch.cuda.is_available() and \
torch.cuda.get_device_name())" 2>&1 | tee -a "$OUT/machine.txt"
hours=$(python3 -c "print($MINUTES / 60)")
python3 benchmarks/locomotion.py train --only "$ONLY" --hours "$hours" --jobs "$JOBS" \
    --nice 0 --set "physics_threads=$PHYSICS_THREADS" 2>&1 | tee "$OUT/train.log"
runs=$(python3 benchmarks/locomotion.py status --only "$ONLY" | awk '{print $1}')
tar -czf "$OUT/runs.tar.gz" --exclude=.lock -C benchmarks/runs $runs
cp benchmarks/runs/logs/*.log "$OUT/" 2>/dev/null
ls -la "$OUT"
