"""A regular (non-editable) install puts `metarl_envs` (from the folder envs/) in site-packages.

The project is built into a wheel and installed without dependencies into a
fresh venv; the dependencies come from this interpreter's site-packages
through a .pth line, which adds their folder without running the editable
install hooks that live there. A bare top-level `envs` must not be installed.
"""

import json
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHECK = """
import json, gymnasium, metarl, metarl_envs
out = {"metarl_envs": metarl_envs.__file__, "metarl": metarl.__file__, "made": []}
for env_id in metarl_envs.ENV_IDS:
    env = gymnasium.make(env_id)
    env.reset(seed=0)
    out["made"].append(env_id)
try:
    import envs
    out["bare_envs"] = envs.__file__
except ImportError:
    out["bare_envs"] = None
print(json.dumps(out))
"""


def run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_regular_install_in_fresh_venv_imports_metarl_envs(tmp_path):
    wheel_dir = tmp_path / "wheels"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(REPO)],
    )
    wheels = list(wheel_dir.glob("metarl-*.whl"))
    assert len(wheels) == 1
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheels[0]).namelist()}
    assert "metarl_envs" in top_level and "envs" not in top_level

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    purelib = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    ).stdout.strip()
    run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheels[0])])
    # After the install, so that pip does not find this interpreter's metarl "already installed".
    (Path(purelib) / "outer_dependencies.pth").write_text("\n".join(site.getsitepackages()))

    out = json.loads(run([str(python), "-c", CHECK], cwd=tmp_path).stdout.splitlines()[-1])
    assert Path(out["metarl_envs"]).is_relative_to(purelib)
    assert Path(out["metarl"]).is_relative_to(purelib)
    assert out["made"] == [
        "metarl/Navigation2D-v0",
        "metarl/HalfCheetahVel-v0",
        "metarl/HalfCheetahDir-v0",
        "metarl/AntVel-v0",
        "metarl/AntDir-v0",
    ]
    assert out["bare_envs"] is None or not Path(out["bare_envs"]).is_relative_to(purelib)
