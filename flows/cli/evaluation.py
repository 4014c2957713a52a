"""`dsan ensemble`, `dsan evaluate` and `dsan report`."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.app import (
    DataRootOpt,
    ProfileOpt,
    app,
    console,
    fail,
    ingested,
    print_lines,
    run_flow,
    stage_setup,
)
from flows.runtime import resolve_data_root, run_name


@app.command(rich_help_panel="Stages")
def ensemble(profile: ProfileOpt = "demo", data_root: DataRootOpt = None) -> None:
    """Search the dual-sampling weights on TV; add the att_ds predictions."""
    root, config = stage_setup(profile, data_root, check_inputs=ingested)
    from flows.evaluation import ensemble_flow

    result = run_flow(ensemble_flow, config.ensemble, root, name=run_name("ensemble",
                                                                          config.profile))
    print_lines(result.summary())


@app.command(rich_help_panel="Stages")
def evaluate(profile: ProfileOpt = "demo", data_root: DataRootOpt = None) -> None:
    """Metrics, statistics, calibration, attention faithfulness, figures and the report."""
    root, config = stage_setup(profile, data_root, check_inputs=ingested)
    from flows.evaluation import evaluation_flow

    result = run_flow(evaluation_flow, config.evaluation, config.train, config.runtime, root,
                      config.fingerprints(), config.profile,
                      name=run_name("evaluate", config.profile))
    print_lines(result.summary())


@app.command(rich_help_panel="Inspect")
def report(
    open_: Annotated[bool, typer.Option("--open", help="print the HTML report's path only")]
    = False,
    data_root: DataRootOpt = None,
) -> None:
    """Table II (TV and test, beside the paper's) and where the evaluation report is
    (Markdown and self-contained HTML)."""
    from dsan_core.evaluation.report_tables import table_ii, text_lines
    from storage.layout import DataLayout
    from storage.tables import read_table, table_exists

    layout = DataLayout(resolve_data_root(data_root))
    html, markdown = (layout.report("evaluation", name) for name in ("report.html",
                                                                       "report.md"))
    if not html.exists():
        fail(RuntimeError("no evaluation report yet: run dsan evaluate (or dsan run)"))
    if open_:
        console.print(str(html), markup=False, highlight=False, soft_wrap=True)
        return
    thresholds = (read_table(layout, "thresholds") if table_exists(layout, "thresholds")
                  else None)
    for line in text_lines(table_ii(read_table(layout, "metrics"), thresholds)):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(f"report: {markdown}\nhtml:   {html}", markup=False, highlight=False)
