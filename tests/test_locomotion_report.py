"""The README's locomotion tables (benchmarks/locomotion_report.py, locomotion_tables.py),
checked by hand."""

import importlib
import math

import numpy as np
from helpers import load_benchmark

from metarl.evaluation import mean_and_ci95

locomotion_report = load_benchmark("locomotion_report")
# the module locomotion_report imported (benchmarks/ is on sys.path), not a second copy
locomotion_tables = importlib.import_module("locomotion_tables")


def test_paired_differences_by_hand():
    maml = [[1.0, 5.0], [2.0, 9.0], [3.0, 4.0]]
    other = [[0.0, 1.0], [2.0, 2.0], [1.0, 3.0]]
    mean, half = locomotion_tables.paired_differences(maml, other)
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
    rows = locomotion_tables.paired_table({"methods": methods})
    assert rows[-2] == "| MAML − pretrained | +1.0 ± 2.5 | +4.0 ± 7.5 |"
    assert not any("oracle" in row for row in rows)  # the oracle does not adapt: no pair
    assert locomotion_tables.paired_table({"methods": {"maml": methods["maml"]}}) == []


def test_term_table_splits_the_paired_difference_after_one_step_by_hand():
    def method(per_task, forward):
        control = (np.asarray(per_task) - np.asarray(forward)).tolist()
        terms = {"reward_forward": forward, "reward_ctrl": control}
        return {"mean": [0, 0], "per_task": per_task, "per_task_terms": terms}

    maml = method([[0.0, 5.0], [0.0, 9.0], [0.0, 4.0]], [[0.0, 6.0], [0.0, 12.0], [0.0, 6.0]])
    pretrained = method([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0]], [[0.0, 1.0], [0.0, 2.0], [0.0, 3.0]])
    methods = {"maml": maml, "pretrained": pretrained}
    rows = locomotion_tables.term_table({"methods": methods})
    # after one step: returns differ by [4, 7, 1], forward terms by [5, 10, 3], control
    # terms by [-1, -3, -2]; t(0.975, 2 dof) * sd / sqrt(3) = 2.484 * sd
    assert rows[2] == "| difference | return | `reward_forward` | `reward_ctrl` |"
    assert rows[-2] == "| MAML − pretrained | +4.0 ± 7.5 | +6.0 ± 9.0 | -2.0 ± 2.5 |"
    del methods["pretrained"]["per_task_terms"]  # results from before the field existed
    assert locomotion_tables.term_table({"methods": methods}) == []


def test_episode_table_shows_length_and_forward_term_where_recorded():
    means = {"episode_length": [197.0, 150.4], "reward_forward": [2.46, -30.0]}
    methods = {"maml": {"mean": [0, 0], "episode_means": means},
               "oracle": {"mean": [0, 0], "episode_means": means}}  # fmt: skip
    rows = locomotion_tables.episode_table({"methods": methods}, {"maml": "MAML"})
    assert rows[-3:] == [
        "| MAML | 197 / 2.5 | 150 / -30.0 |",
        "| oracle | 197 / 2.5 | 150 / -30.0 |",
        "",
    ]
    del methods["oracle"]["episode_means"]  # results from before the field existed: no table
    assert locomotion_tables.episode_table({"methods": methods}, {}) == []


def stage_document(iterations: int, checkpoint: str | None, shift: float) -> dict:
    per_task = {
        "maml": [[0.0, 5.0 + shift], [0.0, 9.0 + shift], [0.0, 4.0 + shift]],
        "pretrained": [[0.0, 1.0], [0.0, 2.0], [0.0, 3.0]],
        "oracle": [[7.0, 7.0], [8.0, 8.0], [9.0, 9.0]],
    }
    methods = {}
    for method, rows in per_task.items():
        mean, half = mean_and_ci95(rows)
        methods[method] = {"mean": list(mean), "ci95": list(half), "per_task": rows}
    maml = {"iterations_done": iterations}
    if checkpoint:  # results written before the choice existed evaluated best.pt
        maml |= {"evaluated_checkpoint": checkpoint}
    return {"methods": methods, "runs": {"maml": maml}}


def test_each_stage_is_kept_under_its_iterations_and_checkpoint(tmp_path):
    name = locomotion_report.stage_name
    assert name("halfcheetah_vel", stage_document(300, "checkpoint.pt", 0)) == (
        "halfcheetah_vel_0300_checkpoint.json"
    )
    assert name("ant_dir", stage_document(60, None, 0)) == "ant_dir_0060_best.json"


def test_stages_table_by_hand(tmp_path):
    paths = []
    for iterations, checkpoint, shift in ((60, None, 0.0), (100, "checkpoint.pt", 3.0)):
        document = stage_document(iterations, checkpoint, shift)
        paths.append(tmp_path / locomotion_report.stage_name("g", document))
        paths[-1].write_text(locomotion_report.json.dumps(document))
    spec = {"paper": {"post_1": 300, "oracle": 400}}
    rows = locomotion_report.stages_table(spec, paths)
    # MAML after one step, per task [5, 9, 4]: 6 ± t(0.975, 2) * sqrt(7) / sqrt(3) = 6.0 ± 6.6,
    # then 9.0 ± 6.6; MAML − pretrained per task: [4, 7, 1] (sd 3: ± 7.5), then [7, 10, 4]
    assert rows[-4:] == [
        "| MAML | 6.0 ± 6.6 | 9.0 ± 6.6 | 300 |",
        "| pretrained | 2.0 ± 2.5 | 2.0 ± 2.5 |  |",
        "| oracle | 8.0 ± 2.5 | 8.0 ± 2.5 | 400 |",
        "| MAML − pretrained (paired) | +4.0 ± 7.5 | +7.0 ± 7.5 | |",
    ]
    assert rows[-6] == "| after 1 step | 60 it. (best.pt) | 100 it. (checkpoint.pt) | paper |"
    assert locomotion_report.stages_table(spec, paths[:1]) == []  # one stage: no table


def test_task_table_groups_tasks_by_their_parameter_by_hand():
    directions = locomotion_tables.task_groups(np.array([1.0, -1.0, -1.0, 1.0, 1.0]))
    assert [(label, list(i)) for label, i in directions] == [("-1", [1, 2]), ("1", [0, 3, 4])]
    goals = locomotion_tables.task_groups(np.array([1.5, 0.1, 0.9, 0.2, 1.9, 0.5]), bins=3)
    assert [(label, list(i)) for label, i in goals] == [
        ("0.10 to 0.20", [1, 3]),
        ("0.50 to 0.90", [2, 5]),
        ("1.50 to 1.90", [0, 4]),
    ]
    document = {
        "task_parameters": [{"direction": d} for d in (1, -1, -1, 1)],
        "methods": {
            "maml": {"adapted": True, "per_task": [[-4, 6], [2, 3], [4, 9], [-2, 2]]},
            "oracle": {"adapted": False, "per_task": [[8, 8], [5, 5], [7, 7], [6, 6]]},
        },
    }
    rows = locomotion_tables.task_table(document, {"maml": "MAML"})
    assert rows[-3:] == ["| MAML | 3.0 → 6.0 | -3.0 → 4.0 |", "| oracle | 6.0 | 7.0 |", ""]
    assert rows[-5] == "| method | -1 (2 tasks) | 1 (2 tasks) |"
    del document["task_parameters"]  # results from before the tasks were recorded: no table
    assert locomotion_tables.task_table(document, {}) == []


def test_the_figure_draws_each_run_only_up_to_the_iterations_its_evaluation_saw(tmp_path):
    root = tmp_path / "repo"
    run_dir = root / "benchmarks/runs/cheetah"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("algorithm: maml\n")
    rows = "".join(f"{i},{-9 + i}\n" for i in range(5))
    (run_dir / "metrics.csv").write_text(f"iteration,return_pre\n{rows}5,-4")  # 5: cut off
    other = root / "benchmarks/runs/other"  # a run of another evaluation: left out
    other.mkdir()
    document = {"runs": {"maml": {"run_dir": "benchmarks/runs/cheetah", "iterations_done": 3}}}
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    copies = locomotion_report.evaluated_curves([run_dir, other], document, root, scratch)
    assert copies == [scratch / "cheetah"]
    assert (copies[0] / "config.yaml").read_text() == "algorithm: maml\n"
    assert (copies[0] / "metrics.csv").read_text().splitlines() == [
        "iteration,return_pre",
        "0,-9",
        "1,-8",
        "2,-7",
    ]
