"""Malformed configs through `metarl train`: one message naming the file or key, exit 2,
no traceback, nothing written (no run directory, nothing in the working directory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from metarl.cli import main

NAV = "env: metarl/Navigation2D-v0\n"
SINE = "problem: sinusoid\n"
HUGE = "1" + "0" * 400  # beyond any float

# (name, file content, a fragment the one error line must hold: the key or "FILE")
MALFORMED = [
    ("list-not-mapping", "- env\n- seed\n", "expected a mapping"),
    ("scalar-text", "hello\n", "expected a mapping"),
    ("scalar-number", "42\n", "expected a mapping"),
    ("binary", b"\x00\x01\xff\xfe\x80metarl", "not a YAML text file"),
    ("latin-1-comment", NAV.encode() + b"# caf\xe9\n", "not a YAML text file"),
    ("nul-character", b"env: metarl/Navi\x00gation2D-v0\n", "not valid YAML"),
    ("unclosed-bracket", NAV + "hidden_sizes: [16, 16\n", "not valid YAML"),
    ("tab-indent", "env:\n\t- x\n", "not valid YAML"),
    ("python-tag", 'env: !!python/object/apply:os.system ["touch ran"]\n', "not valid YAML"),
    ("unhashable-key", NAV + "? [1, 2]\n: 3\n", "unhashable key"),
    ("nested-too-deep", NAV + "seed: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("duplicate-key", NAV + "seed: 1\nseed: 2\n", "key 'seed' is given twice (lines 2 and 3)"),
    ("duplicate-nested", NAV + "hidden_sizes: {a: 1, a: 2}\n", "key 'a' is given twice"),
    ("int-key", "1: 2\nfoo: 3\n", "key 1 is not a name"),
    ("null-key", NAV + "~: 3\n", "key None is not a name"),
    ("bool-key", NAV + "yes: 3\n", "key True is not a name"),
    ("unknown-key", NAV + "learning_rate: 0.1\n", "unknown key(s) ['learning_rate']"),
    ("typo-key", NAV + "inner_lrr: 0.1\n", "did you mean 'inner_lr'?"),
    ("missing-env", "seed: 1\n", "missing required key(s) ['env']"),
    ("empty-file", "", "missing required key(s) ['env']"),
    ("unknown-env", "env: metarl/Nope-v0\n", "'env'"),
    ("text-for-int", NAV + "meta_batch_size: ten\n", "'meta_batch_size': expected an integer"),
    ("bool-for-int", NAV + "meta_batch_size: true\n", "'meta_batch_size': expected an integer"),
    ("float-for-int", NAV + "horizon: 20.5\n", "'horizon': expected an integer"),
    ("text-number", NAV + "inner_lr: 1e-3\n", "write 1.0e-5, not 1e-5"),
    ("nested-list", NAV + "hidden_sizes: [[1, 2], 3]\n", "'hidden_sizes': expected an integer"),
    ("mapping-for-list", NAV + "hidden_sizes: {a: 1}\n", "'hidden_sizes': expected a list"),
    ("self-alias", NAV + "hidden_sizes: &a [*a]\n", "'hidden_sizes': expected an integer"),
    ("empty-list", NAV + "hidden_sizes: []\n", "'hidden_sizes'"),
    ("negative-size", NAV + "hidden_sizes: [-1]\n", "'hidden_sizes'"),
    ("zero-step-size", NAV + "eval_step_sizes: [0.1, 0]\n", "'eval_step_sizes'"),
    ("nan", NAV + "inner_lr: .nan\n", "'inner_lr': expected a finite number"),
    ("inf", NAV + "max_kl: .inf\n", "'max_kl': expected a finite number"),
    ("int-beyond-float", NAV + f"inner_lr: {HUGE}\n", "'inner_lr': expected a finite number"),
    ("huge-seed", NAV + f"seed: {HUGE}\n", "'seed' must be in [0, 4,294,967,295]"),
    ("huge-horizon", NAV + "horizon: 1000000000000\n", "horizon"),
    ("huge-batch", NAV + "meta_batch_size: 1000000000000000\n", "meta_batch_size"),
    ("huge-network", NAV + "hidden_sizes: [100000000, 100000000]\n", "hidden_sizes"),
    ("huge-threads", NAV + "torch_threads: 1000000\n", "'torch_threads' must be in [0, 1,024]"),
    ("gae-lambda", NAV + "gae_lambda: 5\n", "'gae_lambda' must be in [0, 1]"),
    ("init-log-std", NAV + "init_log_std: 1000\n", "'init_log_std' must be in [-20.0, 20.0]"),
    ("line-search-ratio", NAV + "line_search_ratio: 1\n", "'line_search_ratio' must be in (0, 1)"),
    ("bad-choice", NAV + "activation: sigmoid\n", "'activation': 'sigmoid' is not one of"),
    ("address-local", NAV + "ray_address: 10.0.0.1:6379\n", "'ray_address'"),
    ("bad-address", NAV + "sampler: ray\nray_address: nowhere\n", "'ray_address' must be"),
    ("sine-bad-problem", "problem: regression\n", "'problem'"),
    ("sine-oracle-omniglot", "problem: omniglot\nalgorithm: oracle\n", "'algorithm'"),
    ("sine-data-path", "problem: omniglot\ndata_path: no/such/dir\n", "'data_path'"),
    ("sine-huge-shots", SINE + "shots: 1000000000000\n", "shots"),
    ("sine-huge-network", SINE + "hidden_sizes: [10000000, 10000000]\n", "hidden_sizes"),
    ("sine-ways", "problem: omniglot\nways: 1\n", "'ways' must be >= 2"),
    ("sine-huge-seed", SINE + f"split_seed: {HUGE}\n", "'split_seed'"),
    ("sine-duplicate", SINE + "problem: omniglot\n", "key 'problem' is given twice"),
]


@pytest.mark.parametrize(
    "content, fragment", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_a_malformed_config_is_one_message_and_leaves_nothing(
    tmp_path, monkeypatch, capsys, content, fragment
):
    config = tmp_path / "configs" / "bad.yaml"
    config.parent.mkdir()
    if isinstance(content, bytes):
        config.write_bytes(content)
    else:
        config.write_text(content)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    run_dir = tmp_path / "run"

    code = main(["train", str(config), "--run-dir", str(run_dir), "--no-progress"])

    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("metarl: error: "), err
    assert fragment in lines[0]
    # the file is named, except by the memory check (after loading), which names the keys
    assert str(config) in lines[0] or "GiB of memory" in lines[0], lines[0]
    assert "Traceback" not in out + err
    assert not run_dir.exists()
    assert list(work.iterdir()) == []  # nothing in the working directory (runs/, ran, ...)


def test_at_least_30_malformed_configs():
    assert len(MALFORMED) >= 30


@pytest.mark.parametrize("path_kind", ["directory", "missing"])
def test_a_config_path_that_is_no_file_is_named(tmp_path, capsys, path_kind):
    path = tmp_path / "configs"
    if path_kind == "directory":
        path.mkdir()
    assert main(["train", str(path), "--run-dir", str(tmp_path / "run")]) == 2
    expected = "is a directory, not a YAML file" if path_kind == "directory" else "does not exist"
    assert f"metarl: error: config file {str(path)!r} {expected}" in capsys.readouterr().err


def test_ray_address_option_with_the_local_sampler_is_refused(tmp_path, capsys):
    config = Path(__file__).parents[1] / "configs" / "navigation.yaml"  # sampler: local
    run_dir = tmp_path / "run"
    args = ["train", str(config), "--ray-address", "10.0.0.1:6379", "--run-dir", str(run_dir)]
    assert main(args) == 2
    assert "'ray_address' (or --ray-address) is for sampler: ray" in capsys.readouterr().err
    assert not run_dir.exists()
