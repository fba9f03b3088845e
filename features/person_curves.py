"""The personal hour curves of a day's features (``features.hour_curves``): the tries of the habit
window read from the lake, the prior fitted on everyone's (a sample of persons past
``FIT_PERSONS``; or an earlier day's, ``features.curve_priors``), and each person's expected curve,
as the temp table ``person_hour_curves``
(person_id, curve_0 ... curve_23: the expected reach at each local hour).

Only the ``curve`` hour choice reads them (``settings.hour_choice``); for the others the table is
empty and the feature rows do not carry the columns, so their files are as before.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sparse

from contactrank.features import history, sql
from contactrank.features.curve_priors import (
    StoredPrior,
    codes_in,
    newest_prior,
    store_prior,
    vocabularies_of,
)
from contactrank.features.daily_aggregates import KINDS
from contactrank.features.feature_state import HISTORY_WINDOW, own_line_sql
from contactrank.features.hour_curves import BINS, HOURS, CurveFit, expected_curves, fit_curve_prior, try_bins
from contactrank.features.hour_profiles import prior_attributes
from contactrank.features.schema import CHANNELS
from contactrank.settings import Settings

CURVE_COLUMNS = [f"curve_{h}" for h in range(HOURS)]
# Persons whose tries fit the prior: the EM holds (persons x components) in memory, and beyond a
# few ten thousand persons the weights of a few hundred habits no longer move.
FIT_PERSONS = 20_000


def tries_sql(attempts: str, state: str, own_lines: bool) -> str:
    """Per person, channel, local hour and first-try-of-the-day or not: the tries of ``attempts``
    (with a ``date``) and their reaches; with ``own_lines`` only the addresses of ``state``'s rows
    that ``feature_state.own_line_sql`` keeps (a dead or reassigned number fails at every hour)."""
    own = (
        f"AND (person_id, contact_id) IN (SELECT (person_id, contact_id) FROM {state} WHERE {own_line_sql()})"
        if own_lines
        else ""
    )
    return f"""
SELECT person_id, channel, local_hour::INTEGER AS hour, rn > 1 AS retry,
  count(*)::DOUBLE AS tries, sum(is_reach::INTEGER)::DOUBLE AS reaches
FROM (
  SELECT person_id, contact_id, channel, local_hour, {KINDS["reach"]} AS is_reach,
    row_number() OVER (PARTITION BY person_id, contact_id, date ORDER BY attempted_at, attempt_id) AS rn
  FROM {attempts}
) ranked
WHERE local_hour BETWEEN 0 AND {HOURS - 1} {own}
GROUP BY ALL ORDER BY ALL"""


def window_attempts(settings: Settings, d: date) -> str:
    """The lake's attempts of the habit window up to d, with the ``date`` of their partition."""
    files = history.partition_files(settings, "attempts", d, since=d - timedelta(days=HISTORY_WINDOW - 1))
    if not files:
        return f"(SELECT *, NULL::DATE AS date FROM {history.EMPTY_ATTEMPTS})"
    return sql.read_parquet(
        files, hive_partitioning="true", hive_types="{'date': DATE}", union_by_name="true"
    )


def _fit_prior(
    tries: sparse.csr_matrix, reaches: sparse.csr_matrix, codes: np.ndarray, sizes: list[int]
) -> CurveFit:
    """``fit_curve_prior`` on the persons with tries, a fixed draw of ``FIT_PERSONS`` of them past
    that many: the same fit for the same inputs."""
    tried = np.flatnonzero(np.asarray(tries.sum(axis=1)).ravel() > 0)
    sample = tried
    if len(tried) > FIT_PERSONS:
        sample = np.sort(np.random.default_rng(0).choice(tried, FIT_PERSONS, replace=False))
    return fit_curve_prior(tries[sample], reaches[sample], codes[sample], sizes)


def create_person_curves(con, settings: Settings, d: date, state: str, attrs: str, fit: bool) -> None:
    """The temp table ``person_hour_curves`` of every person with a try in the window or a row of
    ``attrs``; empty unless ``fit``."""
    columns = ", ".join(f"NULL::FLOAT AS {c}" for c in CURVE_COLUMNS)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE person_hour_curves AS"
        f" SELECT NULL::VARCHAR AS person_id, {columns} LIMIT 0"
    )
    if not fit:
        return
    counts = con.sql(tries_sql(window_attempts(settings, d), state, settings.hour_habit_own_lines))
    counts = counts.to_arrow_table()
    names = prior_attributes(con, attrs)
    if names:
        picked = ", ".join(f"CAST({sql.quote_ident(n)} AS VARCHAR) AS value_{i}" for i, n in enumerate(names))
        values = con.sql(f"SELECT person_id, {picked} FROM {attrs}").to_arrow_table()
    else:
        values = pa.table({"person_id": pa.array([], pa.string())})
    ids = [table["person_id"].to_numpy(zero_copy_only=False) for table in (counts, values)]
    persons = pd.Index(np.unique(np.concatenate(ids).astype(object)))
    if not len(persons):
        return
    row = persons.get_indexer(ids[0])
    channel = pc.index_in(counts["channel"], value_set=pa.array(CHANNELS)).fill_null(-1).to_numpy()
    bins = try_bins(channel, counts["hour"].to_numpy(), counts["retry"].to_numpy(zero_copy_only=False))
    shape = (len(persons), BINS)
    tries = sparse.csr_matrix((counts["tries"].to_numpy(), (row, bins)), shape=shape)
    reaches = sparse.csr_matrix((counts["reaches"].to_numpy(), (row, bins)), shape=shape)
    columns = [values[f"value_{i}"].combine_chunks() for i in range(len(names))]
    stored = newest_prior(settings, d)
    vocabularies = stored.vocabularies if stored else vocabularies_of(names, columns)
    codes = np.full((len(persons), len(names)), -1, dtype=np.int64)
    if names:
        codes[persons.get_indexer(ids[1])] = codes_in(vocabularies, names, columns)
    if stored:
        prior = stored.for_attributes(names)
    else:
        prior = _fit_prior(tries, reaches, codes, [len(vocabularies[n]) for n in names])
        store_prior(settings, d, StoredPrior(prior, vocabularies))
    curves = expected_curves(prior, tries, reaches, codes)  # float32, a block of persons at a time
    table = pa.table({"person_id": pa.array(persons.to_numpy(), pa.string()),
                      **{c: curves[:, h] for h, c in enumerate(CURVE_COLUMNS)}})  # fmt: skip
    con.register("person_hour_curves_arrow", table)
    con.execute("CREATE OR REPLACE TEMP TABLE person_hour_curves AS SELECT * FROM person_hour_curves_arrow")
    con.unregister("person_hour_curves_arrow")
