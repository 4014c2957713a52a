"""The task layer's glue, not stages: every module directly under `tasks/` is a stage
holding its Prefect tasks; what they share lives here.

    contract   the stage contract (`StageRun`, `cached_stage`, `cached_map`)
    dask_map   fan plain functions out over a Dask scheduler
    progress   progress bars, log lines and Prefect progress artifacts
    workers    the plain functions Dask workers run (no Prefect import)

This package imports nothing at import time, so that a Dask worker importing
`tasks._common.workers` does not pull in Prefect.
"""
