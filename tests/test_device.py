"""The `device` key (auto, cpu, cuda) of the supervised module and of `metarl eval`.

RL's learner on each device is tests/test_device_rl.py.

On the CPU a run is bitwise what the plain CPU code computes (the reference loops below
compose the library's primitives as the trainer did before devices existed); cuda where
there is none is refused naming the key; checkpoints hold CPU tensors and load on the CPU
whatever device wrote them. The tests marked `needs_cuda` run on a machine with a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import needs_cuda, no_cuda

from metarl.checkpoints import load_checkpoint, save_checkpoint
from metarl.cli import main
from metarl.config_validation import ConfigError, config_from_dict
from metarl.metrics import read_rows
from metarl.runtime import learner_device
from metarl.supervised.comparisons import all_points_loss
from metarl.supervised.config import SupervisedConfig
from metarl.supervised.maml import query_curve, query_losses
from metarl.supervised.models import model_params
from metarl.supervised.problems import (
    STREAMS,
    build_model,
    evaluation_inner_loop,
    loss_name,
    make_task_sampler,
    training_inner_loop,
)
from metarl.supervised.tasks import seeded_rng
from metarl.supervised.trainer import train_supervised

ROOT = Path(__file__).resolve().parents[1]
SINUSOID = str(ROOT / "configs" / "sinusoid.yaml")


def tiny(**changes) -> SupervisedConfig:
    values = dict(
        problem="sinusoid",
        iterations=6,
        meta_batch_size=4,
        val_interval=3,
        val_tasks=4,
        log_interval=1,
        eval_shots=[5],
        torch_threads=1,
        lr_grid=[0.01, 0.1],
    )
    return config_from_dict(SupervisedConfig, {**values, **changes})


def reference_losses(config: SupervisedConfig) -> tuple[list[float], dict]:
    """The training losses and final parameters of the plain CPU loop (no device anywhere)."""
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.meta_lr)
    sampler = make_task_sampler(config)
    losses = []
    for iteration in range(config.iterations):
        rng = seeded_rng(config.seed, STREAMS["train"], iteration)
        batch = sampler.sample("train", rng, config.meta_batch_size, config.shots, config.query)
        optimizer.zero_grad()
        if config.meta_learned:
            task_losses, _ = query_losses(
                model, model_params(model), batch, training_inner_loop(config)
            )
            (task_losses.sum() / batch.num_tasks).backward()
            loss = task_losses.detach().mean().item()
        else:
            loss_tensor = all_points_loss(model, model_params(model), batch, loss_name(config))
            loss_tensor.backward()
            loss = loss_tensor.item()
        optimizer.step()
        losses.append(loss)
    return losses, {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize(
    "changes, column",
    [({}, "loss_post"), ({"first_order": True}, "loss_post"), ({"algorithm": "pretrain"}, "loss")],
)
def test_a_cpu_run_is_bitwise_the_plain_cpu_computation(tmp_path, changes, column):
    config = tiny(device="cpu", **changes)
    run = train_supervised(config, tmp_path / "run", show_progress=False)
    expected_losses, expected_params = reference_losses(config)
    _, rows = read_rows(run / "metrics.csv")
    assert [float(r[column]) for r in rows] == expected_losses  # repr: every bit
    state = load_checkpoint(run / "checkpoint.pt")["model_state"]
    for name, value in expected_params.items():
        assert torch.equal(state[name], value), name


def test_a_cpu_evaluation_is_bitwise_the_plain_cpu_computation(tmp_path):
    run = train_supervised(tiny(device="cpu"), tmp_path / "run", show_progress=False)
    args = ["eval", str(run), "--checkpoint", "last", "--tasks", "6", "--steps", "2"]
    assert main([*args, "--device", "cpu", "--out", str(tmp_path / "eval")]) == 0
    rows = json.loads((tmp_path / "eval" / "eval.json").read_text())["rows"]

    checkpoint = load_checkpoint(run / "checkpoint.pt")
    config = config_from_dict(SupervisedConfig, checkpoint["config"])
    model = build_model(config)
    model.load_state_dict(checkpoint["model_state"])
    batches = make_task_sampler(config).batches("test", config.seed, 6, 5, config.query, 4)
    inner = evaluation_inner_loop(config, checkpoint["eval_lr"], 2)
    curve = query_curve(model, model_params(model), batches, inner)
    expected = [float(np.asarray(losses, dtype=np.float64).mean()) for losses in curve.losses]
    assert [r["mean"] for r in rows] == expected


def test_device_auto_and_cpu_give_the_same_run_where_auto_is_the_cpu(tmp_path):
    if learner_device("auto").type != "cpu":
        pytest.skip("auto is cuda here")
    runs = [
        train_supervised(
            tiny(device=d, algorithm="multitask", multitask_models=5), tmp_path / d, False
        )
        for d in ("auto", "cpu")
    ]
    states = [load_checkpoint(run / "checkpoint.pt")["model_state"] for run in runs]
    assert all(torch.equal(states[0][n], states[1][n]) for n in states[0])


def test_each_device_name_maps_to_its_torch_device_where_cuda_is_seen(monkeypatch):
    # Where torch sees a GPU, `cuda` is that GPU and `auto` picks it. Checked on any machine
    # by making torch report one: the first GPU run found `cuda` refused as "not one of
    # ['auto', 'cpu', 'cuda']" (a check written only for the machine without CUDA).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert learner_device("cuda") == torch.device("cuda")
    assert learner_device("auto") == torch.device("cuda")
    assert learner_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="key 'device': 'gpu' is not one of"):
        learner_device("gpu")


@no_cuda
def test_cuda_without_cuda_is_refused_naming_the_key(tmp_path, capsys):
    with pytest.raises(ConfigError, match="key 'device': cuda, but torch sees no CUDA"):
        train_supervised(tiny(device="cuda"), tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before the run directory is made
    with pytest.raises(ConfigError, match="key 'device': cuda"):  # the RL trainer's check
        learner_device("cuda")

    run_dir = tmp_path / "cli"
    args = ["train", SINUSOID, "--set", "device=cuda", "--run-dir", str(run_dir)]
    assert main(args) == 2
    assert "key 'device': cuda, but torch sees no CUDA device" in capsys.readouterr().err
    assert main(["train", SINUSOID, "--set", "device=gpu", "--run-dir", str(run_dir)]) == 2
    assert "key 'device': 'gpu' is not one of ['auto', 'cpu', 'cuda']" in capsys.readouterr().err

    # a run trained on a GPU machine, evaluated here: refused naming the run's key, then
    # evaluated on the CPU with --device cpu; --device cuda is refused naming the option
    run = train_supervised(tiny(device="cpu", iterations=3), tmp_path / "gpu-run", False)
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    save_checkpoint(
        run / "checkpoint.pt", {**checkpoint, "config": {**checkpoint["config"], "device": "cuda"}}
    )
    evaluate = ["eval", str(run), "--checkpoint", "last", "--tasks", "4", "--steps", "1"]
    assert main(evaluate) == 2
    error = capsys.readouterr().err
    assert "the run's key 'device': cuda" in error and "--device cpu" in error
    assert main([*evaluate, "--device", "cuda"]) == 2
    assert "--device: cuda, but torch sees no CUDA device" in capsys.readouterr().err
    assert main([*evaluate, "--device", "cpu"]) == 0


def test_checkpoints_hold_cpu_tensors_and_load_onto_the_cpu(tmp_path, monkeypatch):
    run = train_supervised(tiny(iterations=3, device="auto"), tmp_path / "run", False)
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    optimizer_tensors = [
        v for state in checkpoint["optimizer_state"]["state"].values() for v in state.values()
    ]
    tensors = [*checkpoint["model_state"].values(), *optimizer_tensors]
    assert tensors and all(t.device.type == "cpu" for t in tensors)

    # A file whose tensors are tagged as CUDA ones (what a GPU machine's torch.save writes
    # for them) loads onto the CPU: without map_location torch would put them on CUDA
    # (an error where there is none).
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    save_checkpoint(tmp_path / "cuda-tagged.pt", checkpoint)
    monkeypatch.undo()
    loaded = load_checkpoint(tmp_path / "cuda-tagged.pt")
    for name, value in checkpoint["model_state"].items():
        assert loaded["model_state"][name].device.type == "cpu"
        assert torch.equal(loaded["model_state"][name], value)


def test_eval_help_says_what_stays_on_the_cpu(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--device {auto,cpu,cuda}" in text
    assert "inside the sampler beside the rollouts, on CPU" in text


@needs_cuda
@pytest.mark.parametrize("changes", [{}, {"algorithm": "multitask", "multitask_models": 5}])
def test_a_cuda_run_matches_the_cpu_run_within_rounding(tmp_path, changes):
    runs = {
        d: train_supervised(tiny(device=d, iterations=20, **changes), tmp_path / d, False)
        for d in ("cpu", "cuda")
    }
    losses = {}
    for device, run in runs.items():
        _, rows = read_rows(run / "metrics.csv")
        column = "loss" if changes else "loss_post"
        losses[device] = [float(r[column]) for r in rows]
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-3)
    states = {d: load_checkpoint(run / "checkpoint.pt")["model_state"] for d, run in runs.items()}
    for name, value in states["cpu"].items():
        assert states["cuda"][name].device.type == "cpu"  # written as CPU tensors
        torch.testing.assert_close(states["cuda"][name], value, rtol=1e-3, atol=1e-3)

    results = {}
    for device, run in runs.items():
        out = tmp_path / f"eval-{device}"
        args = ["eval", str(run), "--checkpoint", "last", "--tasks", "8", "--steps", "2"]
        assert main([*args, "--device", device, "--out", str(out)]) == 0
        results[device] = [r["mean"] for r in json.loads((out / "eval.json").read_text())["rows"]]
    np.testing.assert_allclose(results["cuda"], results["cpu"], rtol=1e-3)


@needs_cuda
def test_an_omniglot_conv_step_on_cuda_matches_the_cpu(tmp_path):
    changes = dict(
        problem="omniglot",
        data_path=str(ROOT / "data" / "omniglot"),
        ways=5,
        shots=1,
        query=2,
        eval_shots=None,
        inner_lr=0.4,
        meta_batch_size=2,
        iterations=2,
        val_interval=2,
        val_tasks=2,
    )
    runs = {
        d: train_supervised(tiny(device=d, **changes), tmp_path / d, False) for d in ("cpu", "cuda")
    }
    losses = {
        d: [float(r["loss_post"]) for r in read_rows(run / "metrics.csv")[1]]
        for d, run in runs.items()
    }
    np.testing.assert_allclose(losses["cuda"], losses["cpu"], rtol=1e-2)  # cuDNN: TF32 convolutions
