"""contact_erasure: GDPR erasure of one person, triggered by hand (see docs/airflow.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, task
from contactrank_airflow import default_args, load_settings, small

DOC = """
### contact_erasure

Erases one person from every table, export, landing file and MLflow artifact under
`CONTACTRANK_HOME` (`contactrank.erase.erase_requested`), and records a keyed-hash entry so that
future deliveries of the person are dropped at ingest.

The raw id never reaches Airflow (its database keeps run params, XComs and logs, and erasure must
leave nothing behind): queue the request where the data lives, then trigger with the keyed hash
it prints:

    contactrank erase --request --person-id 12345678900
    airflow dags trigger contact_erasure --conf '{"person_hash": "<printed hash>"}'


The erasure is idempotent (erasing twice is harmless) and rewrites each partition atomically, so a
`contact_daily` run reading at the same time sees a table either before or after the erasure.
The task's XCom holds only counts, never the id.
"""


@dag(
    dag_id="contact_erasure",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=2),
    dagrun_timeout=timedelta(hours=6),
    params={
        "person_hash": Param(
            type="string",
            pattern="^[0-9a-f]{64}$",
            description="keyed hash printed by `contactrank erase --request --person-id ID`",
        ),
    },
    tags=["contactrank", "gdpr", "manual"],
    doc_md=DOC,
)
def contact_erasure():
    @task
    def erase(**context) -> dict:
        from contactrank.erase import erase_requested

        result = small(erase_requested(load_settings(context), str(context["params"]["person_hash"])))
        # The id is personal data: keep it out of XCom even if the result echoes it.
        return {k: v for k, v in result.items() if k not in {"person_id", "contact_ids"}}

    erase()


contact_erasure()
