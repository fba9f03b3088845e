"""contact_daily: the daily contactrank pipeline, one task per library step (see docs/airflow.md)."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import CronDataIntervalTimetable, Param, PokeReturnValue, dag, task, task_group
from contactrank_airflow import (
    EXPORT_ASSET,
    FEATURES_ASSET,
    business_date,
    default_args,
    load_settings,
    push_links,
    run_stage,
    run_stage_part,
    shard_numbers,
    start_date,
)

DOC = """
### contact_daily

Runs the steps of `contactrank run` for one **business date D**, one task per step:
`wait_for_attempts` → `ingest` → `features` → `train` → `gate` → `score` → `publish` → `report`.

* **Date**: the logical date of the run (the run for D starts when D is over: data-interval
  timetable `0 0 * * *` UTC). A run without a logical date (manual trigger with no date) processes
  the day before it was queued; the `date` param (`YYYY-MM-DD`) overrides both.
* **Wait**: `wait_for_attempts` pokes `<landing>/attempts/date=D/` every 5 minutes in reschedule
  mode (no worker slot held) and gives up after 20 hours.
* **Start**: `CONTACTRANK_AIRFLOW_START_DATE` (default 2026-01-01), the first business date the
  schedule owns: with catchup, unpausing the DAG creates a run for every day since.
* **Order**: `max_active_runs=1` and catchup: a day depends on the lake and model of the day
  before, so backfills (`airflow backfill create --dag-id contact_daily ...`) run oldest first.
* **No champion yet** (the first days of history): `score` is skipped with the reason, `publish`
  is skipped with it, and `report` still runs (trigger rule `none_failed`).
* **Train** retrains only when due (`retrain_every_days`); the **gate** decides whether the
  challenger becomes champion.
* **Assets**: `features` updates `contactrank_features`, `publish` updates `contactrank_export`
  with `{"ds", "model_version", "rows", "path"}` in the event extra: schedule downstream DAGs on it.
* **Shards** (`CONTACTRANK_SHARDS`, default 1): `features`, `score` and `publish` are task groups
  whose per-shard tasks are mapped over the shards (`plan_shards`), so Celery or Kubernetes
  workers share them: `features` = `prepare` → `state[k]` → `shared_rates` → `rows[k]` → `done`,
  `score` = `shard[k]`, `publish` = `part[k]` → `commit` (one export, one manifest, one Asset event).
  With one shard `features.prepare`, `score.shard` and `publish.commit` run the whole step and the
  other tasks of the groups say so.
* Every step is idempotent for its date: clearing a task or re-running a date is safe.
* Extra links (plugin `contactrank`): **MLflow run** and **Published export**.

Settings come from the environment (`CONTACTRANK_HOME`, `MLFLOW_TRACKING_URI`, ...); the `landing`
param overrides the landing directory for one run.
"""

PARAMS = {
    "date": Param(
        None,
        type=["null", "string"],
        format="date",
        description="business date YYYY-MM-DD (default: the run's)",
    ),
    "landing": Param(None, type=["null", "string"], description="landing directory (default: settings)"),
}


@dag(
    dag_id="contact_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=start_date(),
    catchup=True,
    max_active_runs=1,
    default_args=default_args(retries=2),
    dagrun_timeout=timedelta(hours=23),
    params=PARAMS,
    tags=["contactrank", "daily", "ml"],
    doc_md=DOC,
)
def contact_daily():
    @task.sensor(poke_interval=300, timeout=20 * 3600, mode="reschedule")
    def wait_for_attempts(**context) -> PokeReturnValue:
        """Done when the day's attempts folder holds at least one data file."""
        from contactrank_airflow import attempts_ready

        settings = load_settings(context)
        d = business_date(context)
        files = attempts_ready(settings.landing, d)
        return PokeReturnValue(is_done=bool(files), xcom_value={"ds": d.isoformat(), "files": len(files)})

    @task
    def plan_shards(**context) -> list[int]:
        return shard_numbers(context)

    @task
    def ingest(**context) -> dict:
        return run_stage(context, "ingest")

    @task
    def features_part(part: str, shard: int | None = None, **context) -> dict:
        return run_stage_part(context, "features", part, shard)

    @task(outlets=[FEATURES_ASSET])
    def features_done(prepared: dict, built: list[dict], **context) -> dict:
        """The feature rows of every shard are written: one Asset event for the day."""
        from contactrank_airflow import features_facts

        rows = sum(int(b.get("rows") or 0) for b in [prepared, *built])  # one shard: prepare built it all
        out = {"ds": business_date(context).isoformat(), "rows": rows}
        context["outlet_events"][FEATURES_ASSET].extra = features_facts(context, out)
        return out

    @task_group(group_id="features")
    def features(shards) -> None:
        prepared = features_part.override(task_id="prepare")("prepare")
        states = features_part.override(task_id="state").partial(part="state").expand(shard=shards)
        rates = features_part.override(task_id="shared_rates")("shared_rates")
        rows = features_part.override(task_id="rows").partial(part="rows").expand(shard=shards)
        prepared >> states >> rates >> rows
        features_done.override(task_id="done")(prepared, rows)

    @task
    def train(**context) -> dict:
        out = run_stage(context, "train")
        push_links(context, mlflow_run_id=out.get("run_id"), model_version=out.get("version"))
        return out

    @task
    def gate(**context) -> dict:
        out = run_stage(context, "gate")
        push_links(context, model_version=out.get("champion"))
        return out

    @task
    def score_shard(shard: int, **context) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from contactrank.errors import NotReady

        try:
            out = run_stage_part(context, "score", "shard", shard)
        except NotReady as exc:  # no champion yet (first days): skip score and publish, still report
            raise AirflowSkipException(str(exc)) from None
        push_links(context, mlflow_run_id=out.get("model_run_id"), model_version=out.get("model_version"))
        return out

    @task_group(group_id="score")
    def score(shards) -> None:
        score_shard.override(task_id="shard").expand(shard=shards)

    @task
    def publish_part(shard: int, **context) -> dict:
        return run_stage_part(context, "publish", "part", shard)

    @task(outlets=[EXPORT_ASSET])
    def publish_commit(**context) -> dict:
        from contactrank_airflow import export_facts

        out = run_stage_part(context, "publish", "commit")
        facts = export_facts(load_settings(context), business_date(context), out)
        context["outlet_events"][EXPORT_ASSET].extra = facts
        push_links(
            context,
            mlflow_run_id=out.get("model_run_id"),
            model_version=facts["model_version"],
            export_path=facts["path"],
        )
        return {**out, **facts}

    @task_group(group_id="publish")
    def publish(shards) -> None:
        parts = publish_part.override(task_id="part").expand(shard=shards)
        parts >> publish_commit.override(task_id="commit")()

    @task(trigger_rule="none_failed")
    def report(**context) -> dict:
        return run_stage(context, "report")

    # the order of contactrank.stages.STAGES (tests/dags/test_integrity.py checks it)
    shards = plan_shards()
    (
        wait_for_attempts()
        >> shards
        >> ingest()
        >> features(shards)
        >> train()
        >> gate()
        >> score(shards)
        >> publish(shards)
        >> report()
    )


contact_daily()
