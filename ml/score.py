"""Score the candidates of date D with the champion: best hour, calibrated score, rank, reasons.

Candidates of D = rows of ``features/date=D`` whose address is active and consented in
``contacts_state/date=D`` (an address only seen in attempts is not in it, and counts as both),
minus suppressions, minus ``invalid`` addresses (policy ``drop``), minus
frequency-capped persons and addresses. See docs/scoring.md for every rule and the figures.

Memory is bounded: candidate selection runs in DuckDB, features stream in record batches of
``settings.score_batch_rows // n_hours`` candidates (so one batch is at most
``score_batch_rows`` model rows of candidate x hour), and only a few small columns per candidate
are kept for ranking.
"""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contactrank.errors import FailClosed, NotReady
from contactrank.features.lake import (
    DATA_FILE,
    partition_dates,
    partition_dir,
    read_partition,
    write_partition,
)
from contactrank.features.schema import CHANNELS, PRIORITY
from contactrank.ml import explore, reasons
from contactrank.ml.model import ContactModel
from contactrank.settings import Settings

log = logging.getLogger(__name__)

KEY = ["person_id", "contact_id"]
CONTRACT_COLUMNS = PRIORITY.names
SCORES_SCHEMA = pa.schema(
    [
        *PRIORITY,
        ("_raw", pa.float64()),
        ("_invalid", pa.bool_()),
        ("_n_attempts", pa.int64()),
        ("_greedy_rank", pa.int32()),
    ]
)
REPORT_FILE = "_score_report.json"
# "auto": lleaves when installed and the run is large enough; "lightgbm" or "lleaves" to force one.
PREDICTOR = "auto"
COMPILED_MIN_ROWS = 5_000_000
CAP_WINDOW_DAYS = 7


def read_suppressions(settings: Settings, d: date) -> pd.DataFrame:
    """Every suppression in force for the file of D (partitions <= D, effective_from <= D+1).

    Fail closed: any partition folder that cannot be read, or lacks a required column, raises
    FailClosed, so nothing is scored or published on a partial view of who must not be contacted.
    """
    root = settings.lake / "suppressions"
    valid_from = d + timedelta(days=1)
    frames = []
    try:
        if root.exists() and not root.is_dir():
            raise FailClosed(f"suppressions: {root} is not a directory")
        folders = sorted(p for p in root.iterdir() if p.name.startswith("date=")) if root.is_dir() else []
    except OSError as exc:
        raise FailClosed(f"suppressions: cannot list {root}: {exc}") from None
    for folder in folders:
        try:
            part = date.fromisoformat(folder.name[5:])
        except ValueError:
            raise FailClosed(f"suppressions: unexpected partition folder {folder}") from None
        if part > d:
            continue
        try:
            table = read_partition(settings, "suppressions", part)
        except Exception as exc:  # noqa: BLE001 - any read error must stop the step
            raise FailClosed(f"suppressions: cannot read {folder / DATA_FILE}: {type(exc).__name__}: {exc}") from None
        if table is None:
            raise FailClosed(f"suppressions: {folder / DATA_FILE} is missing")
        missing = {"person_id", "contact_id", "reason"} - set(table.column_names)
        if missing:
            raise FailClosed(f"suppressions: {folder / DATA_FILE} lacks column(s) {sorted(missing)}")
        df = table.to_pandas()
        if "effective_from" not in df.columns:
            df["effective_from"] = part
        eff = pd.to_datetime(df["effective_from"], errors="coerce").dt.date
        df["effective_from"] = eff.where(eff.notna(), part)
        frames.append(df[["person_id", "contact_id", "reason", "effective_from"]])
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in ["person_id", "contact_id", "reason", "effective_from"]})
    out = pd.concat(frames, ignore_index=True)
    return out[out["effective_from"] <= valid_from].reset_index(drop=True)


def _sql_str(value: object) -> str:
    """A SQL string literal (paths come from settings and may hold quotes)."""
    return "'" + str(value).replace("'", "''") + "'"


def _attempt_files(settings: Settings, d: date) -> list[str]:
    first = d - timedelta(days=CAP_WINDOW_DAYS - 1)
    return [
        str(partition_dir(settings, "attempts", x) / DATA_FILE)
        for x in partition_dates(settings, "attempts")
        if first <= x <= d
    ]


def _load_model(settings: Settings, model: ContactModel | None, model_info: dict | None) -> tuple[ContactModel, dict]:
    if model is None:
        from contactrank.ml.registry import load_champion

        model, model_info = load_champion(settings)
    info = {"name": settings.model_name, "version": None, "run_id": None, **(model_info or {})}
    info["version"] = None if info["version"] is None else str(info["version"])
    return model, info


def _select(settings: Settings, d: date, con, suppressions: pd.DataFrame) -> dict[str, Any]:
    """Build the ``cand`` table (keys of the scored candidates) in DuckDB; return the figures."""
    feats = partition_dir(settings, "features", d) / DATA_FILE
    state = partition_dir(settings, "contacts_state", d) / DATA_FILE
    if not feats.is_file():
        raise NotReady(f"no features for {d}: {feats} does not exist (run `contactrank features --date {d}`)")
    if not state.is_file():
        raise NotReady(f"no contact state for {d}: {state} does not exist (run `contactrank ingest --date {d}`)")
    supp = suppressions.astype({"person_id": "object", "contact_id": "object", "reason": "object"})[
        ["person_id", "contact_id", "reason"]
    ]
    con.register("supp_df", supp)
    files = _attempt_files(settings, d)
    if files:
        con.execute(
            f"""CREATE TEMP TABLE att AS SELECT person_id, contact_id,
                CAST(attempted_at AS DATE) AS _day_utc, filename AS _file
                FROM read_parquet([{', '.join(_sql_str(f) for f in files)}], filename=true)"""
        )
    else:
        con.execute("CREATE TEMP TABLE att (person_id VARCHAR, contact_id VARCHAR, _day_utc DATE, _file VARCHAR)")
    day_file = str(partition_dir(settings, "attempts", d) / DATA_FILE)
    cap_p = int(settings.cap_person_7d)
    cap_a = int(settings.cap_address_day)
    drop_invalid = settings.invalid_policy == "drop"
    con.execute(
        f"""
        CREATE TEMP TABLE base AS
        SELECT f.person_id, f.contact_id, f.last_outcome = 'invalid' AS _invalid
        FROM read_parquet({_sql_str(feats)}) f
        LEFT JOIN read_parquet({_sql_str(state)}) s USING (person_id, contact_id)  -- attempts-only: not in it
        WHERE coalesce(s.active, true) AND coalesce(s.consent, true)
        """
    )
    con.execute(
        """
        CREATE TEMP TABLE flagged AS
        SELECT b.*,
          (b.person_id IN (SELECT person_id FROM supp_df WHERE contact_id IS NULL AND person_id IS NOT NULL)
           OR b.person_id IN (SELECT person_id FROM supp_df WHERE reason = 'deceased' AND person_id IS NOT NULL)
           OR b.person_id IN (SELECT b2.person_id FROM base b2 JOIN supp_df s2 ON b2.contact_id = s2.contact_id
                              WHERE s2.reason = 'deceased' AND s2.person_id IS NULL)
           OR b.contact_id IN (SELECT contact_id FROM supp_df WHERE contact_id IS NOT NULL)) AS _suppressed
        FROM base b
        """
    )
    con.execute(
        f"""
        CREATE TEMP TABLE capped AS
        SELECT f.*,
          ({cap_p} > 0 AND f.person_id IN
              (SELECT person_id FROM att GROUP BY person_id HAVING count(*) >= {cap_p})) AS _cap_person,
          ({cap_a} > 0 AND f.contact_id IN
              (SELECT contact_id FROM att WHERE _file = {_sql_str(day_file)} GROUP BY contact_id HAVING count(*) >= {cap_a})) AS _cap_address,
          ({'_invalid' if drop_invalid else 'false'}) AS _drop_invalid
        FROM flagged f
        """
    )
    fig = con.execute(
        """
        WITH p AS (
          SELECT person_id,
            bool_or(NOT _suppressed) AS any_unsuppressed,
            bool_or(NOT _suppressed AND NOT _drop_invalid) AS any_valid,
            bool_or(NOT _suppressed AND NOT _drop_invalid AND NOT _cap_person AND NOT _cap_address) AS any_kept
          FROM capped GROUP BY person_id)
        SELECT
          (SELECT count(*) FROM capped) AS eligible_addresses,
          (SELECT count(*) FROM p) AS eligible_persons,
          (SELECT count(*) FILTER (WHERE _suppressed) FROM capped) AS addresses_suppressed,
          (SELECT count(*) FILTER (WHERE NOT any_unsuppressed) FROM p) AS persons_suppressed,
          (SELECT count(*) FILTER (WHERE NOT _suppressed AND _drop_invalid) FROM capped) AS addresses_invalid_dropped,
          (SELECT count(*) FILTER (WHERE any_unsuppressed AND NOT any_valid) FROM p) AS persons_invalid_only,
          (SELECT count(*) FILTER (WHERE NOT _suppressed AND NOT _drop_invalid AND (_cap_person OR _cap_address)) FROM capped) AS addresses_capped,
          (SELECT count(*) FILTER (WHERE any_valid AND NOT any_kept) FROM p) AS persons_capped,
          (SELECT count(*) FILTER (WHERE any_kept) FROM p) AS persons,
          (SELECT count(*) FILTER (WHERE NOT _suppressed AND NOT _drop_invalid AND NOT _cap_person AND NOT _cap_address) FROM capped) AS candidates
        """
    ).fetchall()[0]
    names = [
        "eligible_addresses",
        "eligible_persons",
        "addresses_suppressed",
        "persons_left_out_suppression",
        "addresses_invalid_dropped",
        "persons_invalid_only",
        "addresses_capped",
        "persons_left_out_cap",
        "persons",
        "candidates",
    ]
    con.execute(
        """CREATE TEMP TABLE cand AS SELECT person_id, contact_id, _invalid FROM capped
           WHERE NOT _suppressed AND NOT _drop_invalid AND NOT _cap_person AND NOT _cap_address"""
    )
    for table in ("base", "flagged", "capped", "att"):
        con.execute(f"DROP TABLE {table}")
    return {k: int(v) for k, v in zip(names, fig, strict=True)}


def _hours(settings: Settings, channels: pd.Series) -> tuple[list[int], np.ndarray]:
    """All allowed hours, and a (rows x hours) mask of the hours allowed for each row's channel."""
    per_channel = {c: set(settings.allowed_hours(c)) for c in set(CHANNELS) | set(channels.dropna().unique())}
    default = set(settings.allowed_hours(None))
    all_hours = sorted(set().union(*per_channel.values(), default))
    ch = channels.to_numpy(dtype=object)
    mask = np.zeros((len(ch), len(all_hours)), dtype=bool)
    for j, h in enumerate(all_hours):
        ok = {c for c, hs in per_channel.items() if h in hs}
        mask[:, j] = pd.Series(ch).isin(ok).to_numpy() | (pd.isna(ch) & (h in default))
    return all_hours, mask


def model_matrix(model: ContactModel, prepared: pd.DataFrame) -> np.ndarray:
    """The prepared frame as the float64 matrix LightGBM sees: categories as codes, missing as NaN."""
    x = np.empty((len(prepared), len(model.features)), dtype=np.float64)
    for j, c in enumerate(model.features):
        col = prepared[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = col.cat.codes.to_numpy().astype(np.float64)
            codes[codes < 0] = np.nan
            x[:, j] = codes
        else:
            x[:, j] = col.to_numpy(dtype=np.float64)
    return x


def _feature_values(model: ContactModel, name: str, values: pd.Series) -> np.ndarray:
    """One context column as model input (category codes or floats), as ``prepare`` would encode it."""
    if name in model.categories:
        codes = pd.Categorical(values.astype("string"), categories=model.categories[name]).codes.astype(np.float64)
        codes[codes < 0] = np.nan
        return codes
    arr = np.asarray(pd.to_numeric(values, errors="coerce"), dtype=np.float64)
    arr[~np.isfinite(arr)] = np.nan
    return arr


class Predictor:
    """Calibrated probabilities from a feature matrix, with stock LightGBM or a compiled model.

    The compiled (lleaves) predictor is used when it is installed and a run has at least
    ``COMPILED_MIN_ROWS`` model rows (its one-off compilation, cached per model under
    ``<home>/tmp/lleaves``, costs about as much as predicting that many rows with LightGBM).
    """

    def __init__(self, settings: Settings, model: ContactModel, rows: int, kind: str | None = None):
        self.model = model
        self.threads = int(settings.num_threads)
        self.compiled = None
        self.kind = "lightgbm"
        wanted = kind or PREDICTOR
        if wanted == "lleaves" or (wanted == "auto" and rows >= COMPILED_MIN_ROWS):
            try:
                self.compiled = _compile(settings, model)
                self.kind = "lleaves"
            except ImportError:
                if wanted == "lleaves":
                    raise
                log.info("lleaves is not installed: scoring with stock LightGBM")

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The booster's output (probability for ``binary``) before calibration."""
        if self.compiled is not None:
            return np.asarray(self.compiled.predict(x, n_jobs=self.threads), dtype=np.float64)
        return np.asarray(self.model.booster.predict(x, num_threads=self.threads), dtype=np.float64)

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Calibrated probability, as ``ContactModel.predict_proba`` computes it."""
        return self.calibrate(self.raw(x))

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """The calibrator applied to raw outputs, finite and clipped to [0, 1]."""
        cal = self.model.calibrator
        p = np.asarray(cal.predict(raw) if cal is not None else raw, dtype=np.float64)
        return np.clip(np.nan_to_num(p, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def _compile(settings: Settings, model: ContactModel):
    """The lleaves-compiled booster, from the per-model cache when it exists."""
    import hashlib
    import os
    import tempfile

    import lleaves

    text = model.booster.model_to_string()
    key = hashlib.sha256(text.encode()).hexdigest()[:24]
    cache_dir = settings.home / "tmp" / "lleaves"
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache = cache_dir / f"{key}.o"
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        model_file = os.path.join(tmp, "model.txt")
        with open(model_file, "w") as fh:
            fh.write(text)
        compiled = lleaves.Model(model_file=model_file)
        if cache.is_file():
            compiled.compile(cache=str(cache))
        else:
            partial = os.path.join(tmp, "compiled.o")
            log.info("compiling the model with lleaves (%d trees)", compiled.num_trees())
            compiled.compile(cache=partial)
            os.replace(partial, cache)  # a concurrent run sees the whole binary or none
    return compiled


def score_frame(
    settings: Settings,
    d: date,
    model: ContactModel,
    df: pd.DataFrame,
    predictor: Predictor | None = None,
    explainer: reasons.PathExplainer | None = None,
) -> pd.DataFrame:
    """Score one batch of candidates (features rows): best hour, score and reason codes.

    The context of each hour comes from ``features.context.add_context`` (the definition used
    in training); the rest of a row is prepared once and reused for every hour.
    """
    from contactrank.features.context import add_context

    valid_from = d + timedelta(days=1)
    predictor = predictor or Predictor(settings, model, 0)
    hours, allowed = _hours(settings, df["channel"])
    n = len(df)
    base = model_matrix(model, model.prepare(df))
    raws = np.full((n, len(hours)), -np.inf)
    cols = [(j, h, np.flatnonzero(allowed[:, j])) for j, h in enumerate(hours)]
    cols = [(j, h, rows) for j, h, rows in cols if len(rows)]
    reason = [reasons.BASELINE_CODE] * n
    best = np.zeros(n, dtype=np.int64)
    if cols:
        # One preallocated (candidate x hour) matrix: each block is the base rows plus its hour's context.
        stacked = np.empty((sum(len(r) for _, _, r in cols), base.shape[1]), dtype=np.float64)
        offset = 0
        for _, h, rows in cols:
            block = stacked[offset : offset + len(rows)]
            np.take(base, rows, axis=0, out=block)
            ctx = add_context(pd.DataFrame(index=pd.RangeIndex(len(rows))), day=valid_from, hour=h)
            for c in ctx.columns:
                if c in model.features:
                    block[:, model.features.index(c)] = _feature_values(model, c, ctx[c])
            offset += len(rows)
        raw = predictor.raw(stacked)
        offset = 0
        starts = []
        for j, _, rows in cols:
            raws[rows, j] = raw[offset : offset + len(rows)]
            starts.append((j, offset, rows))
            offset += len(rows)
        # The best hour by raw output: calibration is monotone, so this is also an argmax of the
        # calibrated probability, but isotonic steps would turn many hours into ties.
        best = raws.argmax(axis=1)  # first maximum: the earliest hour wins a tie
        # The model input at each row's best hour, picked back out of the stacked matrix.
        take = np.zeros(n, dtype=np.int64)
        for j, off, rows in starts:
            sel = best[rows] == j
            take[rows[sel]] = off + np.flatnonzero(sel)
        if settings.reason_method == "shap":
            x = stacked[take]
            shap = np.asarray(model.booster.predict(x, pred_contrib=True, num_threads=settings.num_threads))
            contrib = shap[:, : len(model.features)] @ reasons.group_matrix(model.features)
        else:
            contrib = (explainer or reasons.PathExplainer(model)).contributions_matrix(stacked[take], num_threads=settings.num_threads)
        reason = reasons.codes(contrib, np.asarray(hours, dtype=np.int64)[best])
    best_hour = np.asarray(hours, dtype=np.int64)[best]
    best_raw = raws[np.arange(n), best]
    best_p = predictor.calibrate(np.where(np.isfinite(best_raw), best_raw, 0.0))
    out = pd.DataFrame(
        {
            # Arrow-backed strings stay Arrow-backed: millions of Python str objects cost GiBs.
            "person_id": _owned(df["person_id"]),
            "contact_id": _owned(df["contact_id"]),
            "channel": _owned(df["channel"]),
            "score": np.clip(best_p, 0.0, 1.0),
            "best_hour": best_hour.astype("int32"),
            "reason": pd.Series(reason, dtype="string[pyarrow]"),  # compact: no Python str per row
            "_raw": best_raw,
            "_invalid": (df["last_outcome"].astype("string") == "invalid").fillna(False).to_numpy(dtype=bool),
            "_n_attempts": pd.to_numeric(df["n_attempts"], errors="coerce").fillna(0).to_numpy(dtype=np.int64),
        }
    )
    no_hour = ~allowed.any(axis=1)
    if no_hour.any():  # a channel with no allowed hour cannot be recommended at all
        out = out[~no_hour].reset_index(drop=True)
    return out


def _owned(col: pd.Series) -> pd.Series:
    """``col`` in buffers of its own.

    A column of a record batch imported from DuckDB shares the lifetime of the whole batch (all
    120 feature columns): keeping the three key columns of every batch kept every batch alive,
    ~35 MB each, 2.5 GiB over a 4.5M-candidate day (bench/daily_load.py).
    """
    if not isinstance(col.dtype, pd.StringDtype) or col.dtype.storage != "pyarrow":
        return col.reset_index(drop=True).copy()
    arr = pa.array(col.array)
    return pd.Series(pd.array(pc.take(arr, pa.array(np.arange(len(arr)))), dtype=col.dtype))


def score(settings: Settings, d: date, model: ContactModel | None = None, model_info: dict | None = None) -> dict:
    """Score the candidates of ``d`` and write ``scores/date=D``; return the figures."""
    from contactrank.features.lake import duckdb_connect

    suppressions = read_suppressions(settings, d)  # first: fail closed before any other work
    model, info = _load_model(settings, model, model_info)
    con = duckdb_connect(settings)
    try:
        figures = _select(settings, d, con, suppressions)
        feats = partition_dir(settings, "features", d) / DATA_FILE
        n_hours = max(1, len(_hours(settings, pd.Series(list(CHANNELS)))[0]))
        batch = max(1, int(settings.score_batch_rows) // n_hours)
        explainer = reasons.PathExplainer(model)
        predictor = Predictor(settings, model, figures["candidates"] * n_hours)
        parts = []
        reader = con.sql(
            f"""SELECT f.* FROM read_parquet({_sql_str(feats)}) f
                SEMI JOIN cand c ON f.person_id = c.person_id AND f.contact_id = c.contact_id"""
        ).to_arrow_reader(batch)
        n_batches = 0
        for rb in reader:
            if rb.num_rows == 0:
                continue
            df = rb.to_pandas()
            parts.append(score_frame(settings, d, model, df, predictor, explainer))
            n_batches += 1
            log.info("%s: scored batch %d (%d candidates)", d, n_batches, rb.num_rows)
    finally:
        con.close()
    scored = pd.concat(parts, ignore_index=True) if parts else score_frame_empty()
    parts.clear()  # the batches are copied into ``scored``: free them before exploring
    ranked = explore.apply(scored, settings, d)
    del scored
    ranked["model_version"] = info["version"]
    table = pa.Table.from_pandas(ranked[[f.name for f in SCORES_SCHEMA]], schema=SCORES_SCHEMA, preserve_index=False)
    report = {
        "date": d.isoformat(),
        "valid_from": (d + timedelta(days=1)).isoformat(),
        "model": {k: info.get(k) for k in ("name", "version", "run_id")},
        **figures,
        "rows": table.num_rows,
        "persons": int(ranked["person_id"].nunique()),
        "explored_persons": int(ranked["explore"].sum()),
        "batches": n_batches,
        "predictor": predictor.kind,
        "cap_person_7d": int(settings.cap_person_7d),
        "cap_address_day": int(settings.cap_address_day),
        "invalid_policy": settings.invalid_policy,
        "explore_share": float(settings.explore_share),
    }
    path = write_partition(settings, "scores", d, table, extra_files={REPORT_FILE: json.dumps(report, indent=2).encode()})
    log.info("%s: %d rows for %d persons -> %s", d, report["rows"], report["persons"], path)
    return report


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
        }
    )


def read_report(settings: Settings, d: date) -> dict:
    """The figures ``score`` recorded beside ``scores/date=D``."""
    path = partition_dir(settings, "scores", d) / REPORT_FILE
    if not path.is_file():
        raise NotReady(f"no scores for {d}: {path} does not exist (run `contactrank score --date {d}`)")
    return json.loads(path.read_text())


def read_scores(settings: Settings, d: date) -> pa.Table:
    """The scored candidates of ``d``."""
    path = partition_dir(settings, "scores", d) / DATA_FILE
    if not path.is_file():
        raise NotReady(f"no scores for {d}: {path} does not exist (run `contactrank score --date {d}`)")
    return pq.read_table(path)
