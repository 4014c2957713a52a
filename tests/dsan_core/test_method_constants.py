"""Each METHOD.md constant has one definition (dsan_core/config.py; the table in its
docstring): its literal appears nowhere else in the source, no default argument repeats
it, and no module re-defines it under another name.

Literals are read with `tokenize` (numbers only: comments, docstrings and messages do not
count); tests are not scanned. The same spelling with an unrelated meaning is listed in
`UNRELATED`, each with its reason, so that a new copy fails here.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections import Counter
from pathlib import Path

from dsan_core import branches, config

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("dsan_core", "storage", "tasks", "flows", "deployments", "benchmarks")
CONFIG = "dsan_core/config.py"

#: The constant defined in dsan_core/config.py -> the spellings a copy of it would have.
LITERALS: dict[str, tuple[str, ...]] = {
    "RATIO_LARGE": ("0.03", "0.030"),
    "RATIO_TINY": ("0.001",),
    "RATIO_SMALL": ("0.005",),
    "CT_WINDOW_WIDTH": ("1500", "1500.0"),
    "CT_WINDOW_LEVEL": ("600", "600.0"),  # -600: the minus is its own token
    "PAPER_W_EXTREME": ("0.35",),
    "PAPER_W_MIDDLE": ("0.96",),
}
#: The window's bounds (level -+ width / 2) are computed, never written.
DERIVED = ("1350", "1350.0")
#: (file, spelling) -> occurrences that mean something else.
UNRELATED: dict[tuple[str, str], int] = {
    ("dsan_core/evaluation/report_tables.py", "0.001"): 1,  # p-values printed as "<0.001"
    ("dsan_core/plots/evaluation.py", "0.35"): 1,  # the transparency of ROC lines
    ("dsan_core/synthetic/anatomy.py", "0.03"): 1,  # a vessel radius (fraction of the body)
    ("dsan_core/synthetic/ratios.py", "0.03"): 1,  # a stratum's share (BALANCED_SHARES)
    ("benchmarks/paper_tables.py", "0.005"): 1,  # tolerance on reproduced table numbers
    ("benchmarks/segmentation.py", "600"): 1,  # the mean HU of a noise volume
    ("benchmarks/training_dispatch.py", "600"): 1,  # a subprocess timeout in seconds
}
#: Parameters and config fields that must take their default from a named constant.
NAMED_DEFAULTS = {"alpha", "beta", "threshold", "attention_alpha", "attention_beta"}
BRANCH_NAMES = {"RN34_US", "ATT_US", "ATT_SS", "ATT_DS", "TRAINED", "MODELS"}


def _sources() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py"))


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _numbers(path: Path) -> Counter[str]:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return Counter(t.string for t in tokens if t.type == tokenize.NUMBER)


def test_the_constants_have_their_paper_values() -> None:
    assert (config.RATIO_LARGE, config.RATIO_TINY, config.RATIO_SMALL) == (0.03, 0.001, 0.005)
    assert (config.CT_WINDOW_WIDTH, config.CT_WINDOW_LEVEL) == (1500.0, -600.0)
    assert (config.ATTENTION_ALPHA, config.ATTENTION_BETA) == (100.0, 0.4)
    assert (config.PAPER_W_EXTREME, config.PAPER_W_MIDDLE) == (0.35, 0.96)
    assert config.DECISION_THRESHOLD == 0.5
    groups = config.GroupsConfig()
    assert (groups.covid_small_below, groups.cap_small_at_most, groups.bin_edges,
            groups.band_low, groups.band_high) == (0.03, 0.001, (0.005, 0.03), 0.001, 0.03)
    thresholds = {config.EvaluationConfig().threshold, config.EnsembleConfig().threshold,
                  config.GateConfig().threshold}
    assert thresholds == {config.DECISION_THRESHOLD}


def test_each_constant_literal_is_written_once() -> None:
    spellings = {s for group in LITERALS.values() for s in group} | set(DERIVED)
    found: dict[tuple[str, str], int] = {}
    for path in _sources():
        for spelling, n in _numbers(path).items():
            if spelling in spellings:
                found[(_name(path), spelling)] = n
    in_config = {s: found.pop((CONFIG, s), 0) for s in spellings}
    for constant, group in LITERALS.items():
        assert sum(in_config[s] for s in group) == 1, f"{constant}: defined once in {CONFIG}"
    assert found == UNRELATED, "a METHOD.md constant is copied: import it from dsan_core.config"


def test_no_default_argument_or_field_repeats_a_constant() -> None:
    copies = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args
                pairs = list(zip(reversed(args.posonlyargs + args.args),
                                 reversed(args.defaults), strict=False))
                pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults,
                                                 strict=True) if d is not None]
                copies += [f"{_name(path)}:{node.lineno} {a.arg}" for a, d in pairs
                           if a.arg in NAMED_DEFAULTS and _is_number(d)]
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and node.target.id in NAMED_DEFAULTS and node.value is not None
                    and _is_number(_field_default(node.value))):
                copies.append(f"{_name(path)}:{node.lineno} {node.target.id}")
    assert copies == []


def _field_default(value: ast.expr) -> ast.expr | None:
    if isinstance(value, ast.Call):
        return next((k.value for k in value.keywords if k.arg == "default"), None)
    return value


def _is_number(node: ast.expr | None) -> bool:
    if isinstance(node, ast.UnaryOp):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def test_the_pseudonym_key_variable_is_named_once() -> None:
    where = [f"{_name(p)}:{n.lineno}" for p in _sources()
             for n in ast.walk(ast.parse(p.read_text()))
             if isinstance(n, ast.Constant) and n.value == config.KEY_ENV]
    assert len(where) == 1 and where[0].startswith(CONFIG), where


def branch_aliases(root: Path = ROOT) -> list[str]:
    """`BRANCH_ATT_US = ATT_US`, `BRANCHES = TRAINED` and the like."""
    found = []
    for path in sorted(p for d in SOURCE_DIRS for p in (root / d).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                values = (node.value.elts if isinstance(node.value, ast.Tuple)
                          and all(isinstance(t, ast.Tuple) for t in targets) else [node.value])
                found += [f"{path.relative_to(root).as_posix()}:{node.lineno} {v.id}"
                          for v in values if isinstance(v, ast.Name) and v.id in BRANCH_NAMES]
    return found


def test_no_module_renames_a_branch() -> None:
    assert branch_aliases() == [], "use dsan_core.branches' names"


def test_branch_names_come_from_one_module() -> None:
    assert set(branches.MODELS) == {branches.RN34_US, branches.ATT_US, branches.ATT_SS,
                                    branches.ATT_DS}
