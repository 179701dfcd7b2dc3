"""The README's paired comparison of MAML with a baseline, checked by hand."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # as for the scripts: their own imports
spec = importlib.util.spec_from_file_location(
    "locomotion_report", ROOT / "benchmarks" / "locomotion_report.py"
)
locomotion_report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(locomotion_report)


def test_paired_differences_by_hand():
    maml = [[1.0, 5.0], [2.0, 9.0], [3.0, 4.0]]
    other = [[0.0, 1.0], [2.0, 2.0], [1.0, 3.0]]
    mean, half = locomotion_report.paired_differences(maml, other)
    # differences per step: [1, 0, 2] and [4, 7, 1]; t(0.975, 2 dof) = 4.302652729749464
    assert np.allclose(mean, [1.0, 4.0])
    assert np.allclose(
        half, [4.302652729749464 * 1.0 / math.sqrt(3), 4.302652729749464 * 3.0 / math.sqrt(3)]
    )


def test_paired_table_rows_follow_the_methods_that_have_per_task_returns():
    methods = {
        "maml": {"mean": [0, 0], "per_task": [[1.0, 5.0], [2.0, 9.0], [3.0, 4.0]]},
        "pretrained": {"mean": [0, 0], "per_task": [[0.0, 1.0], [2.0, 2.0], [1.0, 3.0]]},
        "oracle": {"mean": [0, 0], "per_task": [[9.0, 9.0], [9.0, 9.0], [9.0, 9.0]]},
    }
    rows = locomotion_report.paired_table({"methods": methods})
    assert rows[-2] == "| MAML − pretrained | +1.0 ± 2.5 | +4.0 ± 7.5 |"
    assert not any("oracle" in row for row in rows)  # the oracle does not adapt: no pair
    assert locomotion_report.paired_table({"methods": {"maml": methods["maml"]}}) == []


def test_episode_table_shows_length_and_forward_term_where_recorded():
    means = {"episode_length": [197.0, 150.4], "reward_forward": [2.46, -30.0]}
    methods = {"maml": {"mean": [0, 0], "episode_means": means},
               "oracle": {"mean": [0, 0], "episode_means": means}}  # fmt: skip
    rows = locomotion_report.episode_table({"methods": methods}, {"maml": "MAML"})
    assert rows[-3:] == [
        "| MAML | 197 / 2.5 | 150 / -30.0 |",
        "| oracle | 197 / 2.5 | 150 / -30.0 |",
        "",
    ]
    del methods["oracle"]["episode_means"]  # results from before the field existed: no table
    assert locomotion_report.episode_table({"methods": methods}, {}) == []
