"""Where does one adaptation step help or hurt? Evaluations of the same policy with other
step sizes (or rollouts), task by task.

Each `--eval LABEL=EVAL_JSON[:METHOD]` is a `metarl eval` result on the same held-out tasks
(the same --tasks and --seed), for example MAML's checkpoint evaluated with
`--eval-step-sizes 0.05`. For each it prints the mean return before → after one step
by task parameter (the report's groups: four quarters of a goal velocity, or each
direction), the mean after one step over all tasks, and its difference from the
reference (`--reference LABEL`), paired task by task (mean ± 95% CI).

    python benchmarks/step_size_by_task.py \
        --eval "MAML 0.1=benchmarks/results/GROUP_eval.json:maml" \
        --eval "MAML 0.05=OUT/eval.json:maml" \
        --eval "pretrained=benchmarks/results/GROUP_eval.json:pretrained" \
        --reference pretrained -o OUT.json

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from locomotion_tables import paired_differences, parameter_groups  # benchmarks/ on sys.path

from metarl.evaluation import mean_and_ci95


def read_eval(spec: str) -> tuple[str, str, np.ndarray, list]:
    """LABEL=PATH[:METHOD] -> (label, path, [tasks, steps + 1] returns, the tasks)."""
    label, separator, rest = spec.partition("=")
    if not separator or not label:
        raise SystemExit(f"--eval {spec!r}: give LABEL=EVAL_JSON[:METHOD]")
    path, _, method = rest.partition(":")
    document = json.loads(Path(path).read_text())
    method = method or "maml"
    if method not in document["methods"]:
        raise SystemExit(f"--eval {spec!r}: no method {method!r}; {list(document['methods'])}")
    returns = np.asarray(document["methods"][method]["per_task"], dtype=float)
    return label, path, returns, document["task_parameters"]


def by_task(evals: list, reference: str) -> dict:
    """The comparison of the evaluations (label, path, returns, tasks) on their shared tasks."""
    tasks = evals[0][3]
    for label, path, _, other in evals:
        if other != tasks:
            raise SystemExit(f"{label} ({path}) was evaluated on other tasks than {evals[0][0]}")
    grouped = parameter_groups(tasks)
    if grouped is None:
        raise SystemExit("tasks that are not a single number each: no grouping by parameter")
    key, groups = grouped
    returns = {label: values for label, _, values, _ in evals}
    if reference not in returns:
        raise SystemExit(f"--reference {reference!r}: not one of {list(returns)}")
    rows = []
    for label, path, values, _ in evals:
        mean, half = mean_and_ci95(values)
        difference, difference_half = paired_differences(values, returns[reference])
        rows.append({
            "label": label,
            "source": path,
            "groups": [
                {"tasks": name, "before": values[i, 0].mean(), "after_1": values[i, 1].mean()}
                for name, i in groups
            ],
            "after_1": [float(mean[1]), float(half[1])],
            "after_1_minus_reference": [float(difference[1]), float(difference_half[1])],
        })  # fmt: skip
    return {"parameter": key, "reference": reference, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", action="append", required=True, metavar="LABEL=JSON[:METHOD]")
    parser.add_argument("--reference", required=True, help="the label differences are from")
    parser.add_argument("-o", "--out", default=None, help="JSON output (default: none)")
    args = parser.parse_args()
    result = by_task([read_eval(spec) for spec in args.eval], args.reference)
    result["command"] = "python benchmarks/step_size_by_task.py " + " ".join(sys.argv[1:])
    groups = [g["tasks"] for g in result["rows"][0]["groups"]]
    print(f"Mean return before → after one step, by `{result['parameter']}`:")
    print("| evaluation | " + " | ".join(groups) + f" | 1 step | − {args.reference} |")
    print("|---|" + "---|" * (len(groups) + 2))
    for row in result["rows"]:
        cells = " | ".join(f"{g['before']:.1f} → {g['after_1']:.1f}" for g in row["groups"])
        (mean, half), (diff, diff_half) = row["after_1"], row["after_1_minus_reference"]
        after, minus = f"{mean:.1f} ± {half:.1f}", f"{diff:+.1f} ± {diff_half:.1f}"
        print(f"| {row['label']} | {cells} | {after} | {minus} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2, default=float) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
