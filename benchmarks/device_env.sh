# Sourced by the scripts that run on a lent GPU machine (the library's `device` entry):
# gpu_check.sh, device_train.sh. That machine has Python 3.12 with torch (CUDA) but reaches
# no package registry, so MuJoCo, Gymnasium and what they need come from the wheels that
# benchmarks/gpu_wheels.sh puts in .whl/ (the call carries [".whl"]); metarl is installed
# beside them. Where they import already (this machine's venv), nothing is installed.
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
# Nothing here renders. The device image has no EGL library, and MuJoCo's import catches only
# an ImportError from its GL backend: with MUJOCO_GL=egl, `import mujoco` fails there
# (PyOpenGL's AttributeError, seen on the first run of gpu_check.sh, 2026-11-28).
export PYTHONUNBUFFERED=1 MUJOCO_GL=disable
if ! python3 -c "import mujoco, gymnasium, metarl" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
        --target /tmp/site . || exit 1
    export PYTHONPATH=/tmp/site
fi
