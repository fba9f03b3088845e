"""contact_tuning: the weekly Optuna study of the LightGBM hyper-parameters (see docs/airflow.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task
from contactrank_airflow import business_date, default_args, load_settings, push_links, small

DOC = """
### contact_tuning

A weekly Optuna study (`ml.tune.tune`) over the training window that ends on the business date
(the run's logical date, i.e. the start of the week interval; the `date` param overrides it).
The study lives in an RDB storage and resumes across runs; the best parameters are written to
`<CONTACTRANK_HOME>/tuning/best_params.json`, which the next `train` of `contact_daily` reads.

Params: `trials` (number of Optuna trials, default 20), `date` (`YYYY-MM-DD`, optional).
Runs at most one at a time and never catches up: only the latest week matters.
"""


@dag(
    dag_id="contact_tuning",
    schedule=CronDataIntervalTimetable("0 3 * * 0", timezone="UTC"),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=2, retry_delay=timedelta(minutes=10)),
    dagrun_timeout=timedelta(hours=12),
    params={
        "trials": Param(20, type="integer", minimum=1, maximum=1000, description="Optuna trials"),
        "date": Param(None, type=["null", "string"], format="date", description="business date YYYY-MM-DD"),
    },
    tags=["contactrank", "weekly", "ml", "tuning"],
    doc_md=DOC,
)
def contact_tuning():
    @task(execution_timeout=timedelta(hours=10))
    def tune(**context) -> dict:
        from contactrank.ml.tune import tune as run

        settings = load_settings(context)
        d = business_date(context)
        trials = int(context["params"]["trials"])
        out = {"ds": d.isoformat(), "trials": trials, **small(run(settings, d, trials))}
        push_links(context, mlflow_run_id=out.get("run_id"), mlflow_experiment_id=out.get("experiment_id"))
        return out

    tune()


contact_tuning()
