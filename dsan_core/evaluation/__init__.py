"""Evaluation of the classifiers (METHOD.md "Evaluation") with no double use: metrics at
thresholds chosen out-of-fold, TV pooled and test per fold model (Tables II and III),
the fold-averaged and shipped models, untrained baselines, paired t-tests and DeLong
tests with Holm correction, patient-level bootstrap intervals, calibration, attention
faithfulness against its chance level, and the report.

    metrics       scikit-learn metrics of one model on one set of scans
    thresholds    the threshold rule (Youden's J, nested on TV) and the `thresholds` table
    baselines     untrained baselines: lung-intensity / ratio / hand-feature regressions
    calibration   expected calibration error, reliability-diagram data
    bootstrap     patient-level replicate weights, vectorised weighted metrics
    delong        DeLong's paired AUC test (fast algorithm of Sun & Xu 2014)
    tables        the long `metrics` table, fold-averaged models, reliability tables
    comparisons   the long `comparisons` table (paired t-tests, DeLong tests, Holm)
    faithfulness  attention mass inside the infection (in the lung), chance, lift
    report_tables, report_guide, report   Markdown / HTML rendering

The prediction-table contract (the models' names, the joins) is
`dsan_core.prediction_table` and the paper's published numbers `dsan_core.paper`: below
both this package and `dsan_core.ensemble`, which use them, so that the two do not import
each other (`report` shows an ensemble search). Import from the modules; this package
re-exports nothing.
"""
