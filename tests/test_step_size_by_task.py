"""benchmarks/step_size_by_task.py: the groups, means and paired differences it prints are
those of the eval.json files it reads, and it refuses evaluations on other tasks."""

import json

import numpy as np
import pytest
import scipy.stats
from helpers import load_benchmark

by_task = load_benchmark("step_size_by_task")


def write_eval(path, per_task, velocities, method="maml"):
    tasks = [{"velocity": v} for v in velocities]
    document = {"methods": {method: {"per_task": per_task}}, "task_parameters": tasks}
    path.write_text(json.dumps(document))
    return str(path)


def test_groups_means_and_paired_differences_by_hand(tmp_path):
    velocities = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]  # four quarters of two tasks
    a = [[-10.0, -5.0 - k] for k in range(8)]
    b = [[-10.0, -7.0 - 2 * k] for k in range(8)]
    step = write_eval(tmp_path / "a.json", a, velocities)
    base = write_eval(tmp_path / "b.json", b, velocities, "pretrained")
    evals = [by_task.read_eval(f"small={step}"), by_task.read_eval(f"base={base}:pretrained")]
    result = by_task.by_task(evals, "base")
    small = result["rows"][0]
    assert [g["tasks"] for g in small["groups"]][0] == "0.10 to 0.20"
    assert [g["after_1"] for g in small["groups"]] == [-5.5, -7.5, -9.5, -11.5]
    assert small["after_1"][0] == pytest.approx(-8.5)
    differences = np.array([2.0 + k for k in range(8)])  # (-5 - k) - (-7 - 2k)
    half = scipy.stats.t.ppf(0.975, 7) * differences.std(ddof=1) / np.sqrt(8)
    assert small["after_1_minus_reference"] == pytest.approx([differences.mean(), half])
    assert result["rows"][1]["after_1_minus_reference"] == [0.0, 0.0]


def test_evaluations_on_other_tasks_or_unknown_names_are_refused(tmp_path):
    one = write_eval(tmp_path / "one.json", [[0.0, 1.0]] * 4, [0.1, 0.2, 0.3, 0.4])
    other = write_eval(tmp_path / "other.json", [[0.0, 1.0]] * 4, [0.1, 0.2, 0.3, 0.5])
    evals = [by_task.read_eval(f"one={one}"), by_task.read_eval(f"other={other}")]
    with pytest.raises(SystemExit, match="other tasks"):
        by_task.by_task(evals, "one")
    with pytest.raises(SystemExit, match="--reference"):
        by_task.by_task(evals[:1], "none")
    with pytest.raises(SystemExit, match="no method 'oracle'"):
        by_task.read_eval(f"one={one}:oracle")
    with pytest.raises(SystemExit, match="LABEL=EVAL_JSON"):
        by_task.read_eval(one)
