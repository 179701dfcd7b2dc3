"""Supervised MAML's data, config and evaluation numbers: the Omniglot loader, splits and
tasks, config validation, and the evaluation statistics."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from metarl.config_validation import ConfigError, config_from_dict
from metarl.supervised.config import SupervisedConfig
from metarl.supervised.evaluate import mean_ci95
from metarl.supervised.omniglot import (
    OmniglotDataError,
    load_omniglot,
    sample_omniglot_tasks,
    split_classes,
)

torch.set_num_threads(1)
DATA = Path(__file__).resolve().parents[1] / "data" / "omniglot"


# ---------------------------------------------------------------- Omniglot data


def test_omniglot_loader_reads_the_shipped_zips():
    data = load_omniglot(DATA)
    assert data.images.shape == (292, 20, 28, 28)  # 136 + 156 characters, 20 drawings each
    assert data.images.dtype == torch.float32
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    # strokes are 1 on a 0 background: mostly background
    assert 0.02 < data.images.mean().item() < 0.3
    assert data.num_classes == 292 * 4
    assert len(set(data.names)) == 292


def test_omniglot_splits_are_disjoint_seeded_and_keep_rotations_together():
    splits = split_classes(292, [0.7, 0.1, 0.2], seed=0)
    sets = {k: set(v.tolist()) for k, v in splits.items()}
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"])
    assert not sets["val"] & sets["test"]
    assert set().union(*sets.values()) == set(range(292 * 4))
    characters = {k: {c // 4 for c in v} for k, v in sets.items()}
    assert not (characters["train"] & characters["test"] or characters["val"] & characters["test"])
    assert [len(characters[k]) for k in ("train", "val", "test")] == [204, 30, 58]
    again = split_classes(292, [0.7, 0.1, 0.2], seed=0)
    other = split_classes(292, [0.7, 0.1, 0.2], seed=1)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)
    assert not np.array_equal(splits["test"], other["test"])


def test_omniglot_tasks_have_the_right_shapes_labels_and_rotations():
    data = load_omniglot(DATA)
    classes = split_classes(292, [0.7, 0.1, 0.2], seed=0)["test"]
    batch = sample_omniglot_tasks(data, classes, np.random.default_rng(0), 4, 5, 2, 3)
    assert batch.support_x.shape == (4, 10, 1, 28, 28)
    assert batch.query_x.shape == (4, 15, 1, 28, 28)
    for labels, per_class in ((batch.support_y, 2), (batch.query_y, 3)):
        assert all(torch.bincount(row, minlength=5).tolist() == [per_class] * 5 for row in labels)
    # replay the sampler's draws: each label is one (character, rotation) class of the split
    rng = np.random.default_rng(0)
    chosen = [rng.choice(classes, size=5, replace=False) for _ in range(4)]
    drawings = [rng.permutation(20)[:5] for _ in range(4 * 5)]
    task, label = 2, 3
    cls, order = chosen[task][label], drawings[task * 5 + label]
    expected = torch.rot90(data.images[cls // 4, order[0]], int(cls % 4), dims=(0, 1))
    support = batch.support_x[task, batch.support_y[task] == label]
    torch.testing.assert_close(support[0, 0], expected)
    assert np.isin(np.concatenate(chosen), classes).all()


def test_malformed_or_missing_omniglot_data_is_a_clear_error(tmp_path):
    with pytest.raises(OmniglotDataError, match="data_path"):
        load_omniglot(tmp_path / "nowhere")
    with pytest.raises(OmniglotDataError, match="no Omniglot"):
        load_omniglot(tmp_path)
    (tmp_path / "images_background.zip").write_bytes(b"not a zip")
    with pytest.raises(OmniglotDataError, match="not a readable zip"):
        load_omniglot(tmp_path)
    flat = tmp_path / "flat"
    flat.mkdir()
    with zipfile.ZipFile(flat / "images_background.zip", "w") as archive:
        archive.writestr("images_background/a.png", b"x")
    with pytest.raises(OmniglotDataError, match="<alphabet>/<character>"):
        load_omniglot(flat)


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"problem": "omniglot", "algorithm": "oracle"}, "algorithm"),
        ({"problem": "omniglot", "algorithm": "pretrain"}, "algorithm"),
        ({"problem": "sinusoid", "model": "conv"}, "model"),
        ({"problem": "omniglot", "algorithm": "context", "model": "mlp"}, "model"),
        ({"problem": "regression"}, "problem"),
        ({"problem": "sinusoid", "inner_lr": 0}, "inner_lr"),
        ({"problem": "sinusoid", "first_order": "yes"}, "first_order"),
        ({"problem": "sinusoid", "eval_shots": [0]}, "eval_shots"),
        ({"problem": "omniglot", "data_path": "/no/such/dir"}, "data_path"),
        ({"problem": "omniglot", "shots": 5, "query": 16}, "query"),
        ({"problem": "sinusoid", "shotz": 5}, "shotz"),
    ],
)
def test_bad_config_names_the_key(values, key):
    if values["problem"] == "omniglot" and "data_path" not in values:
        values = {**values, "data_path": str(DATA)}
    with pytest.raises(ConfigError, match=key):
        config_from_dict(SupervisedConfig, values, "test")


def test_shipped_configs_are_valid():
    from metarl.config_validation import load_config

    root = DATA.parents[1]
    for name in ("sinusoid", "omniglot_5way1shot", "omniglot_5way5shot", "omniglot_20way1shot"):
        config = load_config(
            SupervisedConfig, root / "configs" / f"{name}.yaml", [f"data_path={DATA}"]
        )
        assert config.algorithm == "maml" and not config.first_order


# ---------------------------------------------------------------- evaluation


def test_evaluation_counts_diverged_tasks_and_averages_the_rest():
    from metarl.supervised.evaluate import evaluate_model
    from metarl.supervised.problems import build_model

    config = config_from_dict(SupervisedConfig, {"problem": "sinusoid", "eval_query": 20}, "test")
    model = build_model(config)
    rows = {r["step"]: r for r in evaluate_model(model, config, 1e20, 10, 2, seed=0)}
    assert rows[0]["diverged"] == 0 and np.isfinite(rows[0]["mean"])
    assert rows[2]["diverged"] == 10 and np.isnan(rows[2]["mean"])


def test_mean_ci95():
    mean, half = mean_ci95(np.array([1.0, 2.0, 3.0, 4.0]))
    assert mean == 2.5
    assert half == pytest.approx(1.96 * np.std([1, 2, 3, 4], ddof=1) / 2)
