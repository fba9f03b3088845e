"""DagBag integrity: every DAG imports cleanly and follows the project's conventions."""

from __future__ import annotations

import pytest
from helpers.airflow_env import DAG_FILES

from contactrank.stages import STAGE_NAMES, STAGES

DAG_IDS = [p.stem for p in DAG_FILES]


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}, "\n".join(f"{k}: {v}" for k, v in dagbag.import_errors.items())


def test_one_dag_per_file_named_after_it(dagbag) -> None:
    assert sorted(dagbag.dags) == sorted(DAG_IDS)
    for dag_id, dag in dagbag.dags.items():
        assert dag.fileloc.endswith(f"/{dag_id}.py"), f"{dag_id} is defined in {dag.fileloc}"


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_conventions(dagbag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    assert dag.tags and "contactrank" in dag.tags
    assert dag.doc_md and len(dag.doc_md.strip()) > 100
    assert dag.max_active_runs == 1
    for t in dag.tasks:
        assert t.retries >= 2, f"{dag_id}.{t.task_id} has retries={t.retries}"
        assert t.retry_exponential_backoff and t.retry_exponential_backoff > 1, (
            f"{dag_id}.{t.task_id}: no backoff"
        )
        assert t.max_retry_delay is not None
        assert t.on_failure_callback, f"{dag_id}.{t.task_id} has no failure callback"
        assert t.owner == "contactrank"


def _is_mapped(task) -> bool:
    return any(c.__name__ == "MappedOperator" for c in type(task).__mro__)


def _unit(dag, name: str) -> tuple[set[str], set[str]]:
    """(first tasks, last tasks) of a top-level task or of a task group of the daily DAG."""
    inside = {t.task_id for t in dag.tasks if t.task_id == name or t.task_id.startswith(f"{name}.")}
    first = {i for i in inside if not (dag.get_task(i).upstream_task_ids & inside)}
    last = {i for i in inside if not (dag.get_task(i).downstream_task_ids & inside)}
    return first, last


def test_daily_dag_shape(dagbag) -> None:
    dag = dagbag.dags["contact_daily"]
    order = ["wait_for_attempts", "plan_shards", *STAGE_NAMES]  # the one definition of the step order
    assert {t.task_id.split(".")[0] for t in dag.tasks} == set(order)
    mapped = {t.task_id for t in dag.tasks if _is_mapped(t)}
    for up, down in zip(order, order[1:], strict=False):
        (_, last), (first, _) = _unit(dag, up), _unit(dag, down)
        for task_id in last:
            downstream = dag.get_task(task_id).downstream_task_ids
            # the shard numbers also feed every mapped task: data, not order
            extra = downstream - first - (mapped if up == "plan_shards" else set())
            assert first <= downstream and not extra, f"{task_id} should lead to {down} only, not {extra}"
    # a split stage has one task per part of contactrank.stages, the per-shard ones mapped
    for spec in STAGES:
        for part in spec.parts:
            task = dag.get_task(f"{spec.name}.{part.name}")
            assert _is_mapped(task) == part.per_shard, f"{spec.name}.{part.name}"
    assert dag.catchup is True
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert dag.timetable.expression == "0 0 * * *"
    assert set(dag.params) == {"date", "landing"}


def test_sensor_does_not_hold_a_slot_forever(dagbag) -> None:
    sensor = dagbag.dags["contact_daily"].get_task("wait_for_attempts")
    assert sensor.mode == "reschedule"
    assert 0 < sensor.timeout <= 24 * 3600
    assert sensor.poke_interval >= 60


def test_assets_are_emitted(dagbag) -> None:
    from contactrank_airflow import EXPORT_ASSET, FEATURES_ASSET

    dag = dagbag.dags["contact_daily"]
    # once a day each, whatever the number of shards: by the task after the mapped ones
    assert dag.get_task("features.done").outlets == [FEATURES_ASSET]
    assert dag.get_task("publish.commit").outlets == [EXPORT_ASSET]
    assert all(not t.outlets for t in dag.tasks if t.task_id not in {"features.done", "publish.commit"})


def test_tuning_and_erasure_params(dagbag) -> None:
    tuning = dagbag.dags["contact_tuning"]
    assert tuning.params["trials"] == 20
    assert tuning.catchup is False
    erasure = dagbag.dags["contact_erasure"]
    assert erasure.timetable.__class__.__name__ == "NullTimetable"
    assert "person_hash" in erasure.params
    with pytest.raises(Exception, match="person_hash|valid"):
        erasure.params.validate()  # no default: a run without a person_hash is refused


def test_plugin_registers_both_links() -> None:
    from airflow import plugins_manager

    names = {link.name for link in plugins_manager.get_global_operator_extra_links()}
    assert {"MLflow run", "Published export"} <= names
