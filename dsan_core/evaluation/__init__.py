"""Evaluation of the classifiers (METHOD.md "Evaluation") with no double use: metrics at
thresholds chosen out-of-fold, TV pooled and test per fold model (Tables II and III),
the fold-averaged and shipped models, untrained baselines, paired t-tests and DeLong
tests with Holm correction, patient-level bootstrap intervals, calibration, attention
faithfulness against its chance level, and the report.

    predictions   the prediction-table contract, the models' names, the joins
    metrics       scikit-learn metrics of one model on one set of scans
    thresholds    the threshold rule (Youden's J, nested on TV) and the `thresholds` table
    baselines     untrained baselines: lung-intensity / ratio / hand-feature regressions
    calibration   expected calibration error, reliability-diagram data
    bootstrap     patient-level replicate weights, vectorised weighted metrics
    delong        DeLong's paired AUC test (fast algorithm of Sun & Xu 2014)
    tables        the long `metrics` table, fold-averaged models, reliability tables
    comparisons   the long `comparisons` table (paired t-tests, DeLong tests, Holm)
    faithfulness  attention mass inside the infection (in the lung), chance, lift
    paper         the paper's published numbers
    report_tables, report_guide, report   Markdown / HTML rendering

Import from the modules; this package re-exports nothing, so that
`dsan_core.ensemble` (which uses `predictions` and `paper`) and `report` (which shows
an ensemble search) do not import each other in a cycle.
"""
