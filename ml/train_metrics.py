"""Names of a training's metrics in MLflow: grouped so that the chart view folds them.

``ml.evaluate`` and ``ml.train`` keep short flat keys (``auc``, ``baseline_heuristic_auc``,
``auc_voice``, ``fit_s``, ...): the figures ``train`` returns and the benchmarks read. Only the
MLflow run sees the names below. The MLflow chart view makes one section per prefix (everything
before the last ``/``), sorts the sections by name and puts metrics without a ``/`` after all of
them, so every metric gets a prefix, and the handful a reader looks at first share the section
that sorts first (``at_a_glance``):

| MLflow name | figure |
|---|---|
| ``at_a_glance/auc``, ``ece``, ``hit1`` | the model on its test day |
| ``at_a_glance/heuristic_auc`` | the last-success heuristic on the same attempts |
| ``at_a_glance/rows_train``, ``rows_test`` | rows trained on and tested on |
| ``test/<metric>`` | every other test-day metric of the model |
| ``baseline/<random,heuristic,oracle>/<metric>`` | the baselines on the same attempts |
| ``channel/<channel>/<metric>`` | the model by channel; ``<baseline>_<metric>`` for a baseline |
| ``rows/<what>``, ``training/best_iteration`` | the other counts |
| ``window/<split>_days`` | days in each split of the window |
| ``drift/<what>``, ``drift/psi/<feature>`` | drift of the test day against the window |
| ``timing/<step>_s`` | seconds per step of the training |
| ``gate/<key>`` | the gate's ``gate_<key>`` figures (``ml.registry``) |
"""

from __future__ import annotations

AT_A_GLANCE = "at_a_glance"
# flat key -> name in the first section, in the order a reader wants them
HEADLINE: dict[str, str] = {
    "auc": f"{AT_A_GLANCE}/auc",
    "ece": f"{AT_A_GLANCE}/ece",
    "hit1": f"{AT_A_GLANCE}/hit1",
    "baseline_heuristic_auc": f"{AT_A_GLANCE}/heuristic_auc",
    "rows_train": f"{AT_A_GLANCE}/rows_train",
    "rows_test": f"{AT_A_GLANCE}/rows_test",
}
# the metrics ``ml.evaluate.evaluate`` computes per scorer; longest first so ``pr_auc`` is not ``auc``
SCORER_METRICS = ("log_loss", "pr_auc", "ndcg3", "brier", "hit1", "auc", "ece")
BASELINES = ("random", "heuristic", "oracle")
# test-day keys of the model that look like ``<metric>_<channel>`` but are not per channel
TEST_EXTRAS = ("ece_uncalibrated", "auc_on_oracle_rows", "threshold")
TIMINGS = ("load_s", "fit_s", "file_calibration_s", "evaluate_s", "mlflow_s")
WINDOW_DAYS = ("train_days", "valid_days", "test_days")  # how many days each split of the window has


def _split_channel(key: str) -> tuple[str, str | None]:
    """(metric, channel) of ``<metric>_<channel>``, or (key, None) for an overall metric."""
    for metric in SCORER_METRICS:
        if key == metric:
            return metric, None
        if key.startswith(metric + "_"):
            return metric, key[len(metric) + 1 :]
    return key, None


def metric_name(key: str) -> str:
    """The MLflow name of one flat training figure (an unknown key goes to ``other/``)."""
    if key in HEADLINE:
        return HEADLINE[key]
    if key in TEST_EXTRAS:
        return f"test/{key}"
    if key in TIMINGS:
        return f"timing/{key}"
    if key == "best_iteration":
        return "training/best_iteration"
    if key in WINDOW_DAYS:
        return f"window/{key}"
    if key.startswith("rows_"):
        return f"rows/{key[len('rows_') :]}"
    if key.startswith("positives_"):
        return f"rows/{key}"
    if key.startswith("gate_"):
        return f"gate/{key[len('gate_') :]}"
    if key == "oracle_coverage":
        return "baseline/oracle/coverage"
    if key.startswith("psi_"):
        return f"drift/psi/{key[len('psi_') :]}"
    if key.startswith("drift_"):
        return f"drift/{key[len('drift_') :]}"
    for name in BASELINES:
        prefix = f"baseline_{name}_"
        if key.startswith(prefix):
            metric, channel = _split_channel(key[len(prefix) :])
            if channel is None:
                return f"baseline/{name}/{metric}"
            return f"channel/{channel}/{name}_{metric}"
    metric, channel = _split_channel(key)
    if metric in SCORER_METRICS:
        return f"test/{metric}" if channel is None else f"channel/{channel}/{metric}"
    return f"other/{key}"


def mlflow_metrics(figures: dict[str, float]) -> dict[str, float]:
    """Every figure under its MLflow name; the headline ones first (the order MLflow is given)."""
    named = {metric_name(k): float(v) for k, v in figures.items()}
    first = [HEADLINE[k] for k in HEADLINE if HEADLINE[k] in named]
    return {**{k: named[k] for k in first}, **{k: v for k, v in sorted(named.items()) if k not in first}}
