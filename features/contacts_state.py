"""``contacts_state/date=D``: every delivered address as known at the end of D.

It chains on the latest earlier state: re-ingesting an old date means re-ingesting the later ones
too (``contactrank backfill`` does, in order).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa

from contactrank.features.lake import duckdb_connect, partition_dates, read_partition
from contactrank.features.schema import CONTACTS_STATE
from contactrank.features.sql import date_literal
from contactrank.settings import Settings


def contacts_state(settings: Settings, d: date, contacts: pa.Table) -> pa.Table:
    """The state of every delivered address at the end of D: the latest earlier state with D's
    contact upserts applied (latest updated_at wins, ties go to the later delivery; first_seen is
    the earliest date). Rows keep the earlier state's order, then new addresses in delivery order.

    Addresses only seen in attempts are not in it: the features step, which aggregates every
    (person, contact) pair of the attempts anyway, makes them candidates. Finding them here would
    cost a second hash aggregation of the day's attempts and a larger snapshot to write every day.
    """
    earlier_dates = [x for x in partition_dates(settings, "contacts_state") if x < d]
    earlier = read_partition(settings, "contacts_state", earlier_dates[-1]) if earlier_dates else None
    if earlier is None:
        earlier = CONTACTS_STATE.empty_table()
    earlier = earlier.select(CONTACTS_STATE.names).cast(CONTACTS_STATE)
    return _merge_upserts(settings, d, earlier, contacts) if contacts.num_rows else earlier


def _merge_upserts(settings: Settings, d: date, earlier: pa.Table, contacts: pa.Table) -> pa.Table:
    """The earlier state with D's contact upserts applied (DuckDB full join), in state order."""
    con = duckdb_connect(settings)  # bounded memory: the state can hold millions of addresses
    try:
        n_earlier, n_upserts = earlier.num_rows, contacts.num_rows
        con.register("earlier_state", earlier.append_column("state_row", pa.array(np.arange(n_earlier))))
        con.register("day_upserts", contacts.append_column("delivery_seq", pa.array(np.arange(n_upserts))))
        merged = con.sql(f"""
            WITH latest_upserts AS (
              SELECT * FROM day_upserts
              QUALIFY row_number() OVER (PARTITION BY person_id, contact_id
                                         ORDER BY updated_at DESC, delivery_seq DESC) = 1
            ),
            paired AS (
              SELECT state.person_id AS state_person_id, state.contact_id AS state_contact_id,
                     state.channel AS state_channel, state.source AS state_source,
                     state.consent AS state_consent, state.active AS state_active,
                     state.first_seen AS state_first_seen, state.updated_at AS state_updated_at,
                     state.state_row,
                     upsert.person_id AS upsert_person_id, upsert.contact_id AS upsert_contact_id,
                     upsert.channel AS upsert_channel, upsert.source AS upsert_source,
                     upsert.consent AS upsert_consent, upsert.active AS upsert_active,
                     upsert.updated_at AS upsert_updated_at, upsert.delivery_seq
              FROM earlier_state state FULL JOIN latest_upserts upsert
                ON state.person_id = upsert.person_id AND state.contact_id = upsert.contact_id
            ),
            decided AS (
              SELECT *, (upsert_person_id IS NOT NULL AND (state_person_id IS NULL OR state_updated_at IS NULL
                         OR upsert_updated_at >= state_updated_at)) AS upsert_wins FROM paired
            )
            SELECT coalesce(upsert_person_id, state_person_id) AS person_id,
                   coalesce(upsert_contact_id, state_contact_id) AS contact_id,
                   CASE WHEN upsert_wins THEN upsert_channel ELSE state_channel END AS channel,
                   CASE WHEN upsert_wins THEN upsert_source ELSE state_source END AS source,
                   CASE WHEN upsert_wins THEN upsert_consent ELSE state_consent END AS consent,
                   CASE WHEN upsert_wins THEN upsert_active ELSE state_active END AS active,
                   coalesce(state_first_seen, {date_literal(d)}) AS first_seen,
                   CASE WHEN upsert_wins THEN upsert_updated_at ELSE state_updated_at END AS updated_at
            FROM decided
            ORDER BY coalesce(state_row, {int(n_earlier)} + delivery_seq)
        """).to_arrow_table()
    finally:
        con.close()
    return merged.cast(CONTACTS_STATE)
