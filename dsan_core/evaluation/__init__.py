"""Evaluation of the classifiers (METHOD.md "Evaluation"): metrics at threshold 0.5,
TV pooled and test per fold model (Tables II and III), paired t-tests and DeLong tests,
patient-level bootstrap intervals, calibration, attention faithfulness, and the report.

    predictions   the prediction-table contract and its join with groups and splits
    metrics       scikit-learn metrics of one model on one set of scans
    calibration   expected calibration error, reliability-diagram data
    bootstrap     patient-level replicate weights, vectorised weighted metrics
    delong        DeLong's paired AUC test (fast algorithm of Sun & Xu 2014)
    tables        the long `metrics` table and reliability tables
    comparisons   the long `comparisons` table (paired t-tests, DeLong tests)
    faithfulness  attention mass inside the infection, pointing game
    paper         the paper's published numbers
    report_tables, report   Markdown / HTML rendering

Import from the modules; this package re-exports nothing, so that
`dsan_core.ensemble` (which uses `predictions` and `paper`) and `report` (which shows
an ensemble search) do not import each other in a cycle.
"""
