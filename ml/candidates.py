"""The candidates of date D: active, consented addresses minus suppressions, dead ones and caps.

Candidates of D = rows of ``features/date=D`` whose address is active and consented in
``contacts_state/date=D`` (an address only seen in attempts is not in it, and counts as both),
minus suppressions, minus ``invalid`` addresses (policy ``drop``), minus addresses answered by
someone else since their last reach (policy ``drop``), minus frequency-capped persons and
addresses. See docs/scoring.md for every rule. Selection runs in DuckDB and leaves the keys
in the temp table ``CANDIDATES_TABLE``; only counts come back to Python.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from contactrank import storage
from contactrank.errors import FailClosed, NotReady
from contactrank.features.lake import DATA_FILE, partition_dates, partition_dir, read_partition
from contactrank.features.sql import quote_literal, read_parquet
from contactrank.features.suppression_guard import check_marker
from contactrank.settings import Settings
from contactrank.shards import Shard, sharded

CAP_WINDOW_DAYS = 7
CANDIDATES_TABLE = "candidates"
SUPPRESSION_COLUMNS = ["person_id", "contact_id", "reason", "effective_from"]


def read_suppressions(settings: Settings, d: date) -> pd.DataFrame:
    """Every suppression in force for the file of D (partitions <= D, effective_from <= D+1).

    Fail closed: any partition folder that cannot be read, lacks a required column, or records
    suppression rows that ingest could not read (``features.suppression_guard``) raises FailClosed,
    so nothing is scored or published on a partial view of who must not be contacted.
    """
    root = settings.lake / "suppressions"
    valid_from = d + timedelta(days=1)
    frames = []
    try:
        if root.exists() and not root.is_dir():
            raise FailClosed(f"suppressions: {root} is not a directory")
        folders = [p for p in storage.committed_children(root) if p.name.startswith("date=")]
    except OSError as exc:
        raise FailClosed(f"suppressions: cannot list {root}: {exc}") from None
    for folder in folders:
        try:
            part = date.fromisoformat(folder.name[5:])
        except ValueError:
            raise FailClosed(f"suppressions: unexpected partition folder {folder}") from None
        if part > d:
            continue
        check_marker(folder)  # a suppression that ingest could not read blocks every later date
        frames.append(_read_suppression_partition(settings, folder, part))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in SUPPRESSION_COLUMNS})
    out = pd.concat(frames, ignore_index=True)
    return out[out["effective_from"] <= valid_from].reset_index(drop=True)


def _read_suppression_partition(settings: Settings, folder: Path, part: date) -> pd.DataFrame:
    """One suppressions partition with ``effective_from`` defaulting to its date (fail closed)."""
    try:
        table = read_partition(settings, "suppressions", part)
    except Exception as exc:  # noqa: BLE001 - any read error must stop the step
        raise FailClosed(
            f"suppressions: cannot read {folder / DATA_FILE}: {type(exc).__name__}: {exc}"
        ) from None
    if table is None:
        raise FailClosed(f"suppressions: {folder / DATA_FILE} is missing")
    missing = {"person_id", "contact_id", "reason"} - set(table.column_names)
    if missing:
        raise FailClosed(f"suppressions: {folder / DATA_FILE} lacks column(s) {sorted(missing)}")
    df = table.to_pandas()
    if "effective_from" not in df.columns:
        df["effective_from"] = part
    effective = pd.to_datetime(df["effective_from"], errors="coerce").dt.date
    df["effective_from"] = effective.where(effective.notna(), part)
    return df[SUPPRESSION_COLUMNS]


def attempt_files(settings: Settings, d: date) -> list[str]:
    """The attempts partitions of the cap window ending on D."""
    first = d - timedelta(days=CAP_WINDOW_DAYS - 1)
    return [
        str(partition_dir(settings, "attempts", x) / DATA_FILE)
        for x in partition_dates(settings, "attempts")
        if first <= x <= d
    ]


@dataclass(frozen=True)
class CandidateCounts:
    """What selection kept and left out, by address and by person (the score report's figures)."""

    eligible_addresses: int
    eligible_persons: int
    addresses_suppressed: int
    persons_left_out_suppression: int
    addresses_invalid_dropped: int
    addresses_wrong_party_dropped: int
    persons_left_out_dead: int
    addresses_capped: int
    persons_left_out_cap: int
    persons: int
    candidates: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# Each flag of an eligible address, as SQL over the ``eligible_flags`` table.
_WORKING = "NOT suppressed AND NOT dropped_invalid AND NOT dropped_wrong_party"
_KEPT = f"{_WORKING} AND NOT capped_person AND NOT capped_address"
COUNTS_SQL = f"""
    WITH person_flags AS (
      SELECT person_id,
        bool_or(NOT suppressed) AS any_unsuppressed,
        bool_or({_WORKING}) AS any_valid,
        bool_or({_KEPT}) AS any_kept
      FROM eligible_flags GROUP BY person_id)
    SELECT
      (SELECT count(*) FROM eligible_flags) AS eligible_addresses,
      (SELECT count(*) FROM person_flags) AS eligible_persons,
      (SELECT count(*) FILTER (WHERE suppressed) FROM eligible_flags) AS addresses_suppressed,
      (SELECT count(*) FILTER (WHERE NOT any_unsuppressed) FROM person_flags) AS persons_left_out_suppression,
      (SELECT count(*) FILTER (WHERE NOT suppressed AND dropped_invalid) FROM eligible_flags)
        AS addresses_invalid_dropped,
      (SELECT count(*) FILTER (WHERE NOT suppressed AND NOT dropped_invalid AND dropped_wrong_party)
        FROM eligible_flags) AS addresses_wrong_party_dropped,
      (SELECT count(*) FILTER (WHERE any_unsuppressed AND NOT any_valid) FROM person_flags)
        AS persons_left_out_dead,
      (SELECT count(*) FILTER (WHERE {_WORKING} AND (capped_person OR capped_address)) FROM eligible_flags)
        AS addresses_capped,
      (SELECT count(*) FILTER (WHERE any_valid AND NOT any_kept) FROM person_flags) AS persons_left_out_cap,
      (SELECT count(*) FILTER (WHERE any_kept) FROM person_flags) AS persons,
      (SELECT count(*) FILTER (WHERE {_KEPT}) FROM eligible_flags) AS candidates
"""


def _create_recent_attempts(settings: Settings, d: date, con) -> None:
    """``recent_attempts``: the keys, UTC day and source file of every attempt in the cap window."""
    files = attempt_files(settings, d)
    if files:
        con.execute(
            f"""CREATE TEMP TABLE recent_attempts AS SELECT person_id, contact_id,
                CAST(attempted_at AS DATE) AS day_utc, filename AS source_file
                FROM {read_parquet(files, filename="true")}"""
        )
    else:
        con.execute(
            "CREATE TEMP TABLE recent_attempts "
            "(person_id VARCHAR, contact_id VARCHAR, day_utc DATE, source_file VARCHAR)"
        )


def _create_eligible(con, features_file: Path, state_file: Path) -> None:
    """``eligible``: the addresses of the features that are active and consented (attempts-only:
    both), with ``invalid`` (the last outcome) and ``wrong_party``: someone else answered it after
    its last reach, or it answered someone else and never the person (a reassigned number)."""
    con.execute(
        f"""
        CREATE TEMP TABLE eligible AS
        SELECT feature_rows.person_id, feature_rows.contact_id,
          feature_rows.last_outcome = 'invalid' AS invalid,
          coalesce(feature_rows.f_c_days_since_wrong_party < feature_rows.f_c_days_since_reach,
                   feature_rows.f_c_days_since_wrong_party IS NOT NULL) AS wrong_party
        FROM {read_parquet(features_file)} feature_rows
        LEFT JOIN {read_parquet(state_file)} contact_state USING (person_id, contact_id)
        WHERE coalesce(contact_state.active, true) AND coalesce(contact_state.consent, true)
        """
    )


def _create_eligible_suppressed(con) -> None:
    """``eligible_suppressed``: each eligible address flagged when a suppression covers it.

    A suppression covers a whole person when it has no contact_id or says ``deceased``; a deceased
    suppression that names only an address covers every person seen with that address.
    """
    con.execute(
        """
        CREATE TEMP TABLE eligible_suppressed AS
        SELECT address.*,
          (address.person_id IN (SELECT person_id FROM suppression_rows
                                 WHERE contact_id IS NULL AND person_id IS NOT NULL)
           OR address.person_id IN (SELECT person_id FROM suppression_rows
                                    WHERE reason = 'deceased' AND person_id IS NOT NULL)
           OR address.person_id IN (SELECT deceased_at.person_id FROM eligible deceased_at
                                    JOIN suppression_rows deceased
                                      ON deceased_at.contact_id = deceased.contact_id
                                    WHERE deceased.reason = 'deceased' AND deceased.person_id IS NULL)
           OR address.contact_id IN (SELECT contact_id FROM suppression_rows
                                     WHERE contact_id IS NOT NULL)) AS suppressed
        FROM eligible address
        """
    )


def _create_eligible_flags(settings: Settings, d: date, con) -> None:
    """``eligible_flags``: the suppressed addresses plus the cap, invalid- and wrong-party-policy flags."""
    day_file = str(partition_dir(settings, "attempts", d) / DATA_FILE)
    cap_person = int(settings.cap_person_7d)
    cap_address = int(settings.cap_address_day)
    drop_invalid = settings.invalid_policy == "drop"
    drop_wrong_party = settings.wrong_party_policy == "drop"
    con.execute(
        f"""
        CREATE TEMP TABLE eligible_flags AS
        SELECT address.*,
          ({cap_person} > 0 AND address.person_id IN
              (SELECT person_id FROM recent_attempts GROUP BY person_id
               HAVING count(*) >= {cap_person})) AS capped_person,
          ({cap_address} > 0 AND address.contact_id IN
              (SELECT contact_id FROM recent_attempts WHERE source_file = {quote_literal(day_file)}
               GROUP BY contact_id HAVING count(*) >= {cap_address})) AS capped_address,
          ({"invalid" if drop_invalid else "false"}) AS dropped_invalid,
          ({"wrong_party" if drop_wrong_party else "false"}) AS dropped_wrong_party
        FROM eligible_suppressed address
        """
    )


def select_candidates(
    settings: Settings, d: date, con, suppressions: pd.DataFrame, shard: Shard | None = None
) -> CandidateCounts:
    """Build the ``CANDIDATES_TABLE`` temp table (keys and ``invalid`` of the scored candidates), of
    ``shard``'s persons when given (caps count every person's attempts: an address may be shared)."""
    features_file = partition_dir(settings, sharded("features", shard), d) / DATA_FILE
    state_file = partition_dir(settings, "contacts_state", d) / DATA_FILE
    if not features_file.is_file():
        raise NotReady(
            f"no features for {d}: {features_file} does not exist (run `contactrank features --date {d}`)"
        )
    if not state_file.is_file():
        raise NotReady(
            f"no contact state for {d}: {state_file} does not exist (run `contactrank ingest --date {d}`)"
        )
    suppression_rows = suppressions.astype(
        {"person_id": "object", "contact_id": "object", "reason": "object"}
    )[["person_id", "contact_id", "reason"]]
    con.register("suppression_rows", suppression_rows)
    _create_recent_attempts(settings, d, con)
    _create_eligible(con, features_file, state_file)
    _create_eligible_suppressed(con)
    _create_eligible_flags(settings, d, con)
    result = con.execute(COUNTS_SQL)
    row = dict(zip([column[0] for column in result.description], result.fetchone(), strict=True))
    counts = CandidateCounts(**{f.name: int(row[f.name]) for f in fields(CandidateCounts)})
    con.execute(
        f"""CREATE TEMP TABLE {CANDIDATES_TABLE} AS SELECT person_id, contact_id, invalid FROM eligible_flags
            WHERE {_KEPT}"""
    )
    for table in ("eligible", "eligible_suppressed", "eligible_flags", "recent_attempts"):
        con.execute(f"DROP TABLE {table}")
    con.unregister("suppression_rows")
    return counts
