#!/usr/bin/env bash
# Wheels of what a lent GPU machine lacks, for benchmarks/gpu_check.sh, into .whl/ (ignored).
#
# The device machines (the library's `device` entry) have Python 3.12 with torch (CUDA),
# numpy, scipy, pyyaml, tqdm, matplotlib, pillow, tensorboard, psutil and pytest, but
# reach no package registry; MuJoCo, Gymnasium and what they need travel as wheels
# (about 31 MB; the working tree's limit is 64 MiB). Run here, in the repository root:
#
#     bash benchmarks/gpu_wheels.sh
#
# then the device call: carry [".whl"], command "bash benchmarks/gpu_check.sh",
# timeout_s 540.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl \
    mujoco==3.17.0 gymnasium==1.4.0 farama-notifications==0.0.6 glfw==2.11.0 \
    pyopengl==3.1.10 websockets==15.0.1
ls -la .whl
du -sh .whl
