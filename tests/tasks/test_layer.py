"""The task layer's shape: every module directly under `tasks/` is a stage holding a
Prefect task; shared glue lives in `tasks/_common/`; no task module computes a metric
itself (metrics are dsan_core's)."""

from __future__ import annotations

import ast
from pathlib import Path

TASKS = Path(__file__).resolve().parents[2] / "tasks"
#: Hold no @task: the stage registry (each stage's name, labels and key function, in
#: order) and `dsan status`, which calls those key functions without running a stage.
NOT_A_STAGE = {"stages", "status"}
#: What only dsan_core may call to score predictions.
METRIC_CALLS = {"binary_metrics", "roc_auc_score", "roc_curve", "auc", "recall_score",
                "accuracy_score", "f1_score", "compare_with_champion", "delong_test"}


def _modules() -> list[Path]:
    return sorted(p for p in TASKS.glob("*.py") if p.stem != "__init__")


def _decorators(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if isinstance(target, ast.Name):
                    names.add(target.id)
    return names


def test_every_top_level_task_module_is_a_stage() -> None:
    plain = {p.stem for p in _modules() if "task" not in _decorators(ast.parse(p.read_text()))}
    assert plain == NOT_A_STAGE


def test_no_task_module_computes_a_metric() -> None:
    for path in [*_modules(), *sorted((TASKS / "_common").glob("*.py"))]:
        calls = {node.func.id if isinstance(node.func, ast.Name) else node.func.attr
                 for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)}
        assert not calls & METRIC_CALLS, f"{path.name} calls {sorted(calls & METRIC_CALLS)}"
