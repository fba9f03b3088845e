"""Score the candidates of date D with the champion: best hour, calibrated score, rank, reasons.

Candidates come from ``ml.candidates`` (see docs/scoring.md for every rule and the figures).
Memory is bounded: candidate selection runs in DuckDB, features stream in record batches of
``settings.score_batch_rows // n_hours`` candidates (so one batch is at most
``score_batch_rows`` model rows of candidate x hour), and only a few small columns per candidate
are kept for ranking.
"""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contactrank.errors import NotReady
from contactrank.features.context import PERSON_ATTEMPT_COLS, bucket_index
from contactrank.features.lake import (
    DATA_FILE,
    duckdb_connect,
    file_rows,
    partition_dir,
    partition_files_of,
    read_table,
    write_partition,
)
from contactrank.features.schema import CHANNELS, SCORED
from contactrank.features.sql import read_parquet
from contactrank.ml import explore, reasons
from contactrank.ml.candidates import CANDIDATES_TABLE, read_suppressions, select_candidates
from contactrank.ml.hour_outputs import read_hours, rows_at
from contactrank.ml.hours import allowed_hours, choose_hours, hour_scores
from contactrank.ml.model import ContactModel
from contactrank.ml.predictor import Predictor
from contactrank.ml.registry import load_champion
from contactrank.ml.timezones import clock_shifts
from contactrank.settings import Settings
from contactrank.shards import Shard, all_shards, map_shards, sharded

log = logging.getLogger(__name__)

CONTRACT_COLUMNS = SCORED.names  # the contract columns the scorer produces (publish adds the clock)
SCORES_SCHEMA = pa.schema(
    [
        *SCORED,
        ("_raw", pa.float64()),
        ("_invalid", pa.bool_()),
        ("_n_attempts", pa.int64()),
        ("_greedy_rank", pa.int32()),
    ]
)
REPORT_FILE = "_score_report.json"
HOUR_LOG_FILE = "_hour_exploration.parquet"  # rank-1 rows that could explore an hour, with propensities


def _load_model(
    settings: Settings, model: ContactModel | None, model_info: dict | None
) -> tuple[ContactModel, dict]:
    if model is None:
        model, model_info = load_champion(settings)
    info = {"name": settings.model_name, "version": None, "run_id": None, **(model_info or {})}
    info["version"] = None if info["version"] is None else str(info["version"])
    return model, info


def _reason_codes(
    settings: Settings,
    model: ContactModel,
    x: np.ndarray,
    best_hour: np.ndarray,
    explainer: reasons.PathExplainer | None,
) -> list[str]:
    """Reason codes of the model inputs ``x`` (each candidate at its best hour)."""
    if settings.reason_method == "shap":
        shap = np.asarray(model.booster.predict(x, pred_contrib=True, num_threads=settings.num_threads))
        contrib = shap[:, : len(model.features)] @ reasons.group_matrix(model.features)
    else:
        explainer = explainer or reasons.PathExplainer(model)
        contrib = explainer.contributions_matrix(x, num_threads=settings.num_threads)
    return reasons.codes(contrib, best_hour)


def score_frame(
    settings: Settings,
    d: date,
    model: ContactModel,
    df: pd.DataFrame,
    predictor: Predictor | None = None,
    explainer: reasons.PathExplainer | None = None,
    clock_shift: pd.Series | None = None,
) -> pd.DataFrame:
    """Score one batch of candidates (features rows): best hour, score and reason codes.

    The rest of a row is prepared once and reused for every hour. Hours are in the recorded clock;
    ``clock_shift`` (per ``person_id``, ``timezones.clock_shifts``) moves each person's allowed
    window into it.
    """
    predictor = predictor or Predictor(settings, model, 0)
    outputs = read_hours(settings, model, predictor, df, d + timedelta(days=1), clock_shift)
    hour_of, allowed, raws, profile = outputs.hour_of, outputs.allowed, outputs.raws, outputs.profile
    n = len(df)
    reason = [reasons.BASELINE_CODE] * n
    best = np.zeros(n, dtype=np.int64)
    if outputs.blocks:
        best = choose_hours(raws, profile)
        reason = _reason_codes(settings, model, rows_at(outputs, best), hour_of[best], explainer)
    best_raw = raws[np.arange(n), best]
    best_p = hour_scores(predictor, raws, best, profile)
    k, alt = _less_tried_hour(settings, d, df, allowed, best, hour_of)
    alt_p = hour_scores(predictor, raws, alt, profile)
    out = pd.DataFrame(
        {
            # Arrow-backed strings stay Arrow-backed: millions of Python str objects cost GiBs.
            "person_id": _owned(df["person_id"]),
            "contact_id": _owned(df["contact_id"]),
            "channel": _owned(df["channel"]),
            "score": np.clip(best_p, 0.0, 1.0),
            "best_hour": hour_of[best].astype("int32"),
            "reason": pd.Series(reason, dtype="string[pyarrow]"),  # compact: no Python str per row
            "_raw": best_raw,
            "_invalid": (df["last_outcome"].astype("string") == "invalid").fillna(False).to_numpy(dtype=bool),
            "_n_attempts": pd.to_numeric(df["n_attempts"], errors="coerce")
            .fillna(0)
            .to_numpy(dtype=np.int64),
            "_hour_k": k,
            "_explore_hour": hour_of[alt].astype("int32"),
            "_explore_score": np.clip(alt_p, 0.0, 1.0),
        }
    )
    no_hour = ~allowed.any(axis=1)
    if no_hour.any():  # a channel with no allowed hour cannot be recommended at all
        out = out[~no_hour].reset_index(drop=True)
    return out


def _less_tried_hour(
    settings: Settings, d: date, df: pd.DataFrame, allowed: np.ndarray, best: np.ndarray, hour_of: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per candidate, how many allowed hours are *less tried* for its person, and the column of the
    one its person's draw picks (``explore.apply`` decides whether the rank-1 row takes it).

    Less tried: an allowed hour, other than the best one, whose bucket holds at most
    ``explore_max_attempts`` of the person's attempts (all addresses and channels). The pick is a
    uniform draw from a keyed hash of (seed, D, person): the same whatever the batch.
    """
    n = len(df)
    if n == 0 or not set(PERSON_ATTEMPT_COLS).issubset(df.columns):
        return np.zeros(n, dtype=np.int64), best
    per_bucket = np.column_stack(
        [pd.to_numeric(df[c], errors="coerce").fillna(0).to_numpy() for c in PERSON_ATTEMPT_COLS]
    )
    tried = per_bucket[:, bucket_index(hour_of.astype("float64"))]  # attempts in each hour's bucket
    mask = allowed & (tried <= settings.explore_max_attempts)
    mask[np.arange(n), best] = False
    k = mask.sum(axis=1)
    u = explore.uniform(df["person_id"].to_numpy(), settings.seed, d, "hour_pick")
    pick = np.minimum((u * k).astype(np.int64), np.maximum(k - 1, 0))
    alt = np.where(k > 0, (np.cumsum(mask, axis=1) > pick[:, None]).argmax(axis=1), best)
    return k.astype(np.int64), alt


def _owned(col: pd.Series) -> pd.Series:
    """``col`` in buffers of its own.

    A column of a record batch imported from DuckDB shares the lifetime of the whole batch (every
    feature column): keeping the three key columns of every batch kept every batch alive, which
    on a large day is most of the process's memory (bench/daily_load.py).
    """
    if not isinstance(col.dtype, pd.StringDtype) or col.dtype.storage != "pyarrow":
        return col.reset_index(drop=True).copy()
    arr = pa.array(col.array)
    return pd.Series(pd.array(pc.take(arr, pa.array(np.arange(len(arr)))), dtype=col.dtype))


def _score_batches(
    settings: Settings, d: date, con, model: ContactModel, candidates: int, shard: Shard | None
) -> tuple[list[pd.DataFrame], Predictor]:
    """Stream the features of the candidates in batches and score each; the scored batches."""
    persons = con.sql(f"SELECT DISTINCT person_id FROM {CANDIDATES_TABLE}").fetchnumpy()["person_id"]
    shifts = clock_shifts(settings, d, pd.Series(persons, dtype=object))
    features_file = partition_dir(settings, sharded("features", shard), d) / DATA_FILE
    n_hours = max(1, len(allowed_hours(settings, pd.Series(list(CHANNELS)))[0]))
    batch = max(1, int(settings.score_batch_rows) // n_hours)
    explainer = reasons.PathExplainer(model)
    predictor = Predictor(settings, model, _day_rows(settings, d, candidates, shard) * n_hours)
    parts = []
    reader = con.sql(
        f"""SELECT feature_rows.* FROM {read_parquet(features_file)} feature_rows
            SEMI JOIN {CANDIDATES_TABLE} candidate
              ON feature_rows.person_id = candidate.person_id
             AND feature_rows.contact_id = candidate.contact_id"""
    ).to_arrow_reader(batch)
    for record_batch in reader:
        if record_batch.num_rows == 0:
            continue
        parts.append(score_frame(settings, d, model, record_batch.to_pandas(), predictor, explainer, shifts))
        log.info("%s: scored batch %d (%d candidates)", d, len(parts), record_batch.num_rows)
    return parts, predictor


def _day_rows(settings: Settings, d: date, candidates: int, shard: Shard | None) -> int:
    """The candidates the predictor is chosen for: the day's, not the shard's, so that every shard
    picks the predictor an unsharded run would (a shard's feature rows bound its candidates; the
    compiled model is cached per model version, so each shard reuses one compilation)."""
    if shard is None:
        return candidates
    return sum(file_rows(f) for f in partition_files_of(settings, "features", d))


def score(
    settings: Settings,
    d: date,
    model: ContactModel | None = None,
    model_info: dict | None = None,
    shard: Shard | None = None,
) -> dict:
    """Score the candidates of ``d`` and write ``scores/date=D`` (``scores/shard=k-of-N/date=D`` for
    one shard); return the figures. With ``settings.shards`` > 1 and no shard: every shard in turn."""
    if shard is None and settings.shards > 1:
        return _score_all_shards(settings, d, model, model_info)
    suppressions = read_suppressions(settings, d)  # first: fail closed before any other work
    model, info = _load_model(settings, model, model_info)
    con = duckdb_connect(settings)
    try:
        counts = select_candidates(settings, d, con, suppressions, shard)
        parts, predictor = _score_batches(settings, d, con, model, counts.candidates, shard)
    finally:
        con.close()
    n_batches = len(parts)
    scored = pd.concat(parts, ignore_index=True) if parts else score_frame_empty()
    parts.clear()  # the batches are copied into ``scored``: free them before exploring
    ranked = explore.apply(scored, settings, d)
    del scored
    ranked["model_version"] = info["version"]
    table = pa.Table.from_pandas(
        ranked[[f.name for f in SCORES_SCHEMA]], schema=SCORES_SCHEMA, preserve_index=False
    )
    report = {
        "date": d.isoformat(),
        "valid_from": (d + timedelta(days=1)).isoformat(),
        "model": {k: info.get(k) for k in ("name", "version", "run_id")},
        **counts.as_dict(),
        "rows": table.num_rows,
        "persons": int(ranked["person_id"].nunique()),
        "explored_persons": int(ranked["explore"].sum()),
        "explored_hours": int(ranked["_hour_explore"].sum()),
        "batches": n_batches,
        "predictor": predictor.kind,
        "cap_person_7d": int(settings.cap_person_7d),
        "cap_address_day": int(settings.cap_address_day),
        "invalid_policy": settings.invalid_policy,
        "explore_share": float(settings.explore_share),
    }
    extra = {REPORT_FILE: json.dumps(report, indent=2).encode(), HOUR_LOG_FILE: _hour_log(ranked)}
    if shard is not None:
        report["shard"] = shard.folder
    path = write_partition(settings, sharded("scores", shard), d, table, extra_files=extra)
    log.info("%s: %d rows for %d persons -> %s", d, report["rows"], report["persons"], path)
    return report


def _score_all_shards(
    settings: Settings, d: date, model: ContactModel | None, model_info: dict | None
) -> dict:
    if settings.shard_workers > 1:  # each process loads the champion itself: a booster is large to send
        return merge_reports(map_shards(score_shard, settings, d, workers=settings.shard_workers))
    model, info = _load_model(settings, model, model_info)
    return merge_reports([score(settings, d, model, info, shard) for shard in all_shards(settings.shards)])


def score_shard(settings: Settings, d: date, shard: Shard) -> dict:
    """``score`` for one shard, with the champion of the registry."""
    return score(settings, d, shard=shard)


def merge_reports(reports: list[dict]) -> dict:
    """One report for the shards' reports of a day: counts added, the rest as every shard has it."""
    merged = {k: v for k, v in reports[0].items() if k != "shard"}
    for key, value in merged.items():
        if isinstance(value, int) and not isinstance(value, bool) and key not in _SETTINGS_FIGURES:
            merged[key] = sum(int(r.get(key, 0)) for r in reports)
    merged["shards"] = len(reports)
    return merged


_SETTINGS_FIGURES = frozenset({"cap_person_7d", "cap_address_day"})  # the same in every shard's report


def _hour_log(ranked: pd.DataFrame) -> bytes:
    """The hour-exploration log: every rank-1 row whose hour was drawn, the recommended and the
    greedy hour, the probability of the recommended one given the address (``propensity`` stays
    the address's) and how many less-tried hours the draw had (what ``evaluate-policy`` needs to
    value hour policies)."""
    rows = ranked[(ranked["rank"] == 1) & (ranked["_hour_k"] > 0)]
    table = pa.table(
        {
            "person_id": pa.array(rows["person_id"].astype(str).to_numpy(dtype=object), pa.string()),
            "contact_id": pa.array(rows["contact_id"].astype(str).to_numpy(dtype=object), pa.string()),
            "best_hour": pa.array(rows["best_hour"].to_numpy(dtype=np.int32)),
            "greedy_hour": pa.array(rows["_greedy_hour"].to_numpy(dtype=np.int32)),
            "hour_explore": pa.array(rows["_hour_explore"].to_numpy(dtype=bool)),
            "hour_propensity": pa.array(rows["_hour_propensity"].to_numpy(dtype=np.float64)),
            "less_tried_hours": pa.array(rows["_hour_k"].to_numpy(dtype=np.int32)),
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def score_frame_empty() -> pd.DataFrame:
    """An empty scored frame with the columns ``explore.apply`` expects."""
    return pd.DataFrame(
        {
            "person_id": pd.Series(dtype="object"),
            "contact_id": pd.Series(dtype="object"),
            "channel": pd.Series(dtype="object"),
            "score": pd.Series(dtype="float64"),
            "best_hour": pd.Series(dtype="int32"),
            "reason": pd.Series(dtype="object"),
            "_raw": pd.Series(dtype="float64"),
            "_invalid": pd.Series(dtype="bool"),
            "_n_attempts": pd.Series(dtype="int64"),
            "_hour_k": pd.Series(dtype="int64"),
            "_explore_hour": pd.Series(dtype="int32"),
            "_explore_score": pd.Series(dtype="float64"),
        }
    )


def read_report(settings: Settings, d: date) -> dict:
    """The figures ``score`` recorded beside ``scores/date=D`` (every shard's, merged)."""
    paths = partition_files_of(settings, "scores", d, REPORT_FILE)
    if not paths:
        path = partition_dir(settings, "scores", d) / REPORT_FILE
        raise NotReady(f"no scores for {d}: {path} does not exist (run `contactrank score --date {d}`)")
    reports = [json.loads(p.read_text()) for p in paths]
    return reports[0] if len(reports) == 1 else merge_reports(reports)


def read_scores(settings: Settings, d: date, shard: Shard | None = None) -> pa.Table:
    """The scored candidates of ``d`` (of one shard, when given)."""
    path = partition_dir(settings, sharded("scores", shard), d) / DATA_FILE
    if not path.is_file():
        raise NotReady(f"no scores for {d}: {path} does not exist (run `contactrank score --date {d}`)")
    return read_table(path)
