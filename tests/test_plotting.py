"""`metarl plot`: the learning and adaptation figure, from RL and supervised runs and
evaluations, with each method one colour, and metrics files cut off by a killed writer."""

from __future__ import annotations

import json
import struct

from metarl.cli import main


def test_plot_names_an_input_it_cannot_read(tmp_path, capsys):
    assert main(["plot", str(tmp_path), "-o", str(tmp_path / "x.png")]) == 2
    assert "no metrics.csv" in capsys.readouterr().err


def test_plot_reads_supervised_runs_and_evaluations(tmp_path):
    run = tmp_path / "sinusoid"
    run.mkdir()
    (run / "metrics.csv").write_text(
        "iteration,tasks,wall_s,loss_post,val_loss_pre,val_loss_post\n"
        "1,25,0.1,3.0,nan,nan\n2,50,0.2,2.0,4.0,1.5\n3,75,0.3,1.0,nan,nan\n"
    )
    rows = [
        {"shots": 10, "step": k, "metric": "mse", "mean": 3.0 / (k + 1), "ci95": 0.1}
        for k in range(3)
    ]
    (run / "eval.json").write_text(json.dumps({"problem": "sinusoid", "rows": rows}))
    figure = tmp_path / "sinusoid.png"
    assert main(["plot", str(run), "-o", str(figure)]) == 0
    assert struct.unpack(">II", figure.read_bytes()[16:24]) == (1280, 480)


def test_plot_gives_a_method_the_same_colour_in_both_panels(tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    from metarl.plotting import collect, plot_adaptation, plot_learning

    runs = []
    for name, algorithm in (("cheetah", "maml"), ("cheetah_pretrain", "pretrain")):
        run = tmp_path / name
        run.mkdir()
        (run / "config.yaml").write_text(f"algorithm: {algorithm}\n")
        post = ",return_post_1" if algorithm == "maml" else ""
        rows = "\n".join(f"{i},{i * 800},{-9 + i}" + (f",{-8 + i}" if post else "") for i in (1, 2))
        (run / "metrics.csv").write_text(f"iteration,env_steps,return_pre{post}\n{rows}\n")
        runs.append(run)
    methods = {
        m: {"steps": [0, 1], "mean": [-9.0, -8.0], "ci95": [1.0, 1.0]}
        for m in ("maml", "pretrained", "random")
    }
    (tmp_path / "eval.json").write_text(json.dumps({"env": "x", "methods": methods}))
    learning, adaptation = collect([*runs, tmp_path / "eval.json"])
    assert [method for _, _, method in learning] == ["maml", "pretrained"]
    figure, (left, right) = plt.subplots(1, 2)
    plot_learning(left, learning)
    plot_adaptation(right, adaptation)
    colour = {line.get_label(): to_rgba(line.get_color()) for line in left.lines + right.lines}
    assert colour["cheetah: before adaptation"] == colour["cheetah: after 1 step(s)"]
    assert colour["cheetah: before adaptation"] == colour["MAML"]
    assert colour["cheetah_pretrain: training return"] == colour["pretrained"]
    assert colour["MAML"] != colour["pretrained"]
    styles = {line.get_label(): line.get_linestyle() for line in left.lines}
    assert styles["cheetah: before adaptation"] != styles["cheetah: after 1 step(s)"]
    plt.close(figure)


def test_plot_reads_a_metrics_file_whose_last_row_was_cut_off_by_a_killed_writer(tmp_path):
    from metarl.plotting import read_metrics

    metrics = tmp_path / "metrics.csv"
    metrics.write_text("iteration,env_steps,return_pre\n0,800,-9.5\n1,1600,-8.25\n2,24")
    assert read_metrics(metrics) == {
        "iteration": [0.0, 1.0],
        "env_steps": [800.0, 1600.0],
        "return_pre": [-9.5, -8.25],
    }
