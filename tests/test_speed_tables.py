"""The README's speed tables: figures computed from the benchmarks' JSON, checked by hand."""

import json

import pytest
from helpers import load_benchmark

speed_tables = load_benchmark("speed_tables")
speed = load_benchmark("speed")


def scenario(name, iteration, sampling, update, **more):
    return {"scenario": name, "device": "cpu", "iteration_s": iteration, "sampling_s": sampling,
            "update_s": update, "conjugate_gradient_s": update / 2, "peak_memory_mb": 1000.0,
            **more}  # fmt: skip


def sampler_row(env, runs):
    """A sampler_throughput row whose medians and ratios are computed as the benchmark does."""
    rates = {k: sorted(v)[len(v) // 2] if len(v) % 2 else sum(v) / len(v) for k, v in runs.items()}
    ratios = {}
    for a, b in (("ray-2", "raw-2"), ("local", "raw-1")):
        per_round = sorted(x / y for x, y in zip(runs[a], runs[b]))
        ratios[f"{a} / {b}"] = sum(per_round) / len(per_round)
    return {"env": f"metarl/{env}-v0", "steps_per_s": rates, "ratios": ratios, "runs": runs,
            "meta_batch": {"tasks": 2, "rollouts_per_task": 3, "horizon": 4}}  # fmt: skip


@pytest.fixture
def results():
    floor = {"update_floor_s": 0.5, "update_over_floor": 4.0, "update_gflop": 50.0,
             "matmul_gflop_per_s": 100.0}  # fmt: skip
    cheetah = {"update_floor_s": 10.0, "update_over_floor": 3.0, "update_gflop": 1000.0,
               "matmul_gflop_per_s": 100.0}  # fmt: skip
    return {
        "speed_block": {
            "machine": {"cpu": "Test CPU", "cpus": 2, "memory_gib": 24.0, "python": "3.11"},
            "cpu_busy_before": 0.04,
            "benchmarks": [
                {
                    "name": "env_step_rate",
                    "started": "2026-11-27 21:00:05 UTC",
                    "ended": "2026-11-27 21:10:00 UTC",
                    "load_1m_before": 0.1,
                    "load_1m_after": 1.0,
                },
                {
                    "name": "meta_iteration",
                    "started": "2026-11-27 21:10:00 UTC",
                    "ended": "2026-11-27 21:31:00 UTC",
                    "load_1m_before": 1.0,
                    "load_1m_after": 2.0,
                },
            ],  # fmt: skip
        },
        "env_step_rate": {
            "rows": [
                {"env": "metarl/Navigation2D-v0", "env_steps_per_s": 70000.4},
                {
                    "env": "metarl/AntDir-v0",
                    "env_steps_per_s": 1500.0,
                    "raw_mj_step_env_steps_per_s": 2000.0,
                    "ratio_env_to_raw": 0.75,
                },
            ]
        },  # fmt: skip
        "meta_iteration": {
            "results": [
                scenario("nav-tanh64", 2.0, 0.5, 1.5, **floor),
                scenario("nav-tanh64-sub25", 1.0, 0.5, 0.5),
                scenario("cheetah", 60.0, 30.0, 30.0, **cheetah),
                scenario("cheetah-sub25", 40.0, 30.0, 10.0),
                {
                    "scenario": "pytorch-maml-rl",
                    "rounds": [
                        {"pytorch_maml_rl_s": 10.0, "metarl_s": 2.0, "ratio": 5.0},
                        {"pytorch_maml_rl_s": 12.0, "metarl_s": 3.0, "ratio": 4.0},
                        {"pytorch_maml_rl_s": 9.0, "metarl_s": 1.0, "ratio": 9.0},
                    ],
                },
            ]
        },  # fmt: skip
        "sampler_throughput": {
            "repeats": 2,
            "rows": [
                sampler_row(
                    "HalfCheetahVel",
                    {
                        "ray-2": [16.0, 18.0],
                        "raw-2": [20.0, 20.0],
                        "local": [8.0, 9.0],
                        "raw-1": [10.0, 10.0],
                    },
                ),
                sampler_row(
                    "AntDir",
                    {
                        "ray-2": [9.0, 10.0],
                        "raw-2": [10.0, 10.0],
                        "local": [4.0, 4.0],
                        "raw-1": [5.0, 5.0],
                    },
                ),
            ],
        },  # fmt: skip
    }


def row_of(table: str, starts: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| {starts}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_targets_are_judged_on_the_median_with_each_round_shown(results):
    table = speed_tables.targets_table(results)
    # pytorch-maml-rl / metarl per round 5, 4, 9: median 5.0x, missed
    assert row_of(table, "pytorch-maml-rl / metarl")[2:] == [
        "5.0x (10.00 s / 2.00 s, 12.00 s / 3.00 s, 9.00 s / 1.00 s)", "missed"
    ]  # fmt: skip
    # the anchor's median 10 s over metarl's subsampled iteration 1 s
    assert row_of(table, "same, metarl with")[2] == "10.0x (10.00 s / 1.00 s)"
    # at the floor: 10 s / (0.5 s sampling + 0.5 s floor) = 10x, the bound of the ratio
    assert row_of(table, "same, if metarl")[2:] == [
        "10.0x (10.00 s / (0.50 s + 0.50 s))", "the bound"
    ]  # fmt: skip
    assert row_of(table, "HalfCheetahVel update / its")[2:] == [
        "3.00x (30.00 s / 10.00 s: 1000 GFLOP at 100.0 GFLOP/s)", "missed"
    ]  # fmt: skip
    assert row_of(table, "HalfCheetahVel update / sampling")[2:] == ["0.33", "met"]
    # rounds 16/20 = 0.80 and 18/20 = 0.90: median 0.85 >= 0.8
    assert row_of(table, "HalfCheetahVel sampling, Ray")[2:] == [
        "0.85 (rounds: 0.80, 0.90)", "met"
    ]  # fmt: skip
    assert row_of(table, "HalfCheetahVel sampling, local")[2:] == [
        "0.85 (rounds: 0.80, 0.90)", "met"
    ]  # fmt: skip
    # AntDir: 0.90 and 1.00, median 0.95 >= 0.9
    assert row_of(table, "AntDir sampling")[2:] == ["0.95 (rounds: 0.90, 1.00)", "met"]


def test_a_target_just_under_is_missed():
    assert speed_tables.verdict(0.7999, 0.8, at_least=True) == "missed"
    assert speed_tables.verdict(0.8, 0.8, at_least=True) == "met"
    assert speed_tables.verdict(2.0001, 2.0, at_least=False) == "missed"


def test_env_and_meta_iteration_tables(results):
    env = speed_tables.env_table(results)
    assert row_of(env, "Navigation2D") == ["Navigation2D", "70,000", "–", "–"]
    assert row_of(env, "AntDir") == ["AntDir", "1,500", "2,000", "0.75"]
    meta = speed_tables.meta_iteration_table(results)
    assert row_of(meta, "Navigation2D, 2x64") == [
        "Navigation2D, 2x64 tanh", "2.00", "0.50", "1.50", "0.75", "4.00", "1,000"
    ]  # fmt: skip


def test_the_block_line_names_the_machine_and_the_times(results):
    line = speed_tables.block_line(results)
    assert "Test CPU (2 CPUs, 24 GiB" in line and "2026-11-27 21:00 to 21:31 UTC" in line
    assert "4% of the CPUs busy" in line and "meta_iteration 21:10-21:31" in line


def test_report_writes_between_the_markers_and_names_what_is_missing(results, tmp_path):
    for name, document in results.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(document))
    with pytest.raises(SystemExit, match="sampler_throughput.json"):
        (tmp_path / "sampler_throughput.json").unlink()
        speed.report(tmp_path / "README.md", tmp_path)
    (tmp_path / "sampler_throughput.json").write_text(json.dumps(results["sampler_throughput"]))
    names = speed_tables.tables(results)
    readme = tmp_path / "README.md"
    readme.write_text(
        "intro\n" + "".join(f"<!-- speed:{n} -->\nold\n<!-- /speed:{n} -->\nprose\n" for n in names)
    )
    speed.report(readme, tmp_path)
    text = readme.read_text()
    assert "old" not in text and text.count("prose") == len(names) and text.startswith("intro\n")
    assert "| AntDir | 1,500 | 2,000 | 0.75 |" in text
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        speed.report(readme, tmp_path)
