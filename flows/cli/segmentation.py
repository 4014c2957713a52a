"""`dsan train-seg` and `dsan segment`."""

from __future__ import annotations

from flows.cli.app import (
    DataRootOpt,
    ProfileOpt,
    app,
    console,
    ingested,
    print_lines,
    run_flow,
    stage_setup,
)


@app.command("train-seg", rich_help_panel="Stages")
def train_seg(profile: ProfileOpt = "demo", data_root: DataRootOpt = None) -> None:
    """Train the VB-Net on ingested scans with ground-truth masks (cached; resumes)."""
    root, config = stage_setup(profile, data_root, check_inputs=ingested)
    from flows.runtime import run_name
    from flows.segmentation import train_segmenter_flow

    result = run_flow(train_segmenter_flow, config.segmentation, config.runtime, root,
                      name=run_name("train-seg", config.profile))
    if result is None:
        console.print("no VB-Net: no scan with ground-truth masks to train on (ingest with "
                      "--masks, or review masks: dsan masks export / import)", markup=False)
        return
    console.print(f"VB-Net {result.model_version}: best epoch {result.best_epoch} "
                  f"(score {result.best_score:.4f}), {result.n_train} train / "
                  f"{result.n_val} val scans, cache hit: {result.cache_hit}", markup=False)


@app.command(rich_help_panel="Stages")
def segment(profile: ProfileOpt = "demo", data_root: DataRootOpt = None) -> None:
    """Segment every scan, then the infection, groups and evaluation tables and figures."""
    root, config = stage_setup(profile, data_root, check_inputs=ingested)
    from flows.runtime import run_name
    from flows.segmentation import segmentation_flow

    result = run_flow(segmentation_flow, config.segmentation, config.groups, config.runtime, root,
                      name=run_name("segment", config.profile))
    print_lines(result.summary())
