"""Compile Gymnasium's MuJoCo model files without MuJoCo's `settotalmass` deprecation noise.

Gymnasium's half_cheetah.xml sets `<compiler settotalmass="14"/>`, which recent
MuJoCo releases deprecate. `MjModel.from_xml_path` then prints a warning and
appends it to MUJOCO_LOG.TXT in the working directory on every compile (every
env a sampler builds). Compiling through `MjSpec` raises it as a Python warning
instead, which we filter; the model is the same (tests/test_envs.py compares
every field).
"""

from __future__ import annotations

import warnings

import mujoco


def compile_model(path: str) -> mujoco.MjModel:
    """The compiled model of the XML file at `path`, without the deprecation warning."""
    spec = mujoco.MjSpec.from_file(path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="compiler attribute 'settotalmass'")
        return spec.compile()
