"""The simulated world's landing files (docs/contract.md §1) and its ground-truth files.

Timestamps are ISO 8601 with a ``-03:00`` offset in CSV and UTC timestamps in Parquet; some
phones arrive in national format and some e-mails upper-cased, as providers deliver them.
``truth.parquet`` holds p(reach | person, contact, hour) on the day after the last simulated day
(the day a ranking built at the end date is used; ``hour`` in the person's own clock) and
``truth_attempts.parquet`` the true
p_reach / p_conversion of every simulated attempt.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from contactrank.features.schema import CHANNELS, OUTCOMES
from contactrank.features.simulated_world import (
    AGE_BANDS,
    EMAIL,
    REGIONS,
    SEGMENTS,
    SOURCES,
    DayAttempts,
    World,
    concat_text,
)

OFFSET = timedelta(hours=-3)  # the simulated providers give local time at -03:00 (Brasília)
OFFSET_TEXT = "-03:00"
_TRUTH_SLICE = 50_000  # addresses per slice of truth.parquet: memory stays bounded for large worlds


def iso_local(day: date, seconds: np.ndarray, offsets: np.ndarray | None = None) -> pa.Array:
    """ISO 8601 local timestamps with the -03:00 offset (or each row's offset in whole hours) for
    seconds since local midnight of ``day``."""
    base = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    naive = pa.array((base + seconds).astype("int64"), type=pa.timestamp("s"))
    text = pc.strftime(naive, format="%Y-%m-%dT%H:%M:%S")
    if offsets is None:
        return concat_text(text, OFFSET_TEXT)
    sign = np.where(offsets < 0, "-", "+")
    zone = np.char.add(np.char.add(sign, np.char.zfill(np.abs(offsets).astype(str), 2)), ":00")
    return concat_text(text, pa.array(zone))


def utc_timestamps(day: date, seconds: np.ndarray, offsets: np.ndarray | None = None) -> pa.Array:
    """UTC timestamps for seconds since local (-03:00, or each row's offset in hours) midnight of ``day``."""
    base = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    shift = int(OFFSET.total_seconds()) if offsets is None else offsets.astype("int64") * 3600
    utc = (base + seconds.astype("int64") - shift) * 10**6
    return pa.array(utc, type=pa.timestamp("us", tz="UTC"))


def messy_ids(rng: np.random.Generator, ids: pa.Array, channel: np.ndarray) -> pa.Array:
    """Deliver some phones in national format and some e-mails upper-cased, as providers do."""
    n = len(ids)
    u = rng.random(n)
    national = pa.array((channel != EMAIL) & (u < 0.12))
    upper = pa.array((channel == EMAIL) & (u < 0.1))
    # +55 DD 9XXXX XXXX -> (DD) 9XXXX-XXXX
    nat = concat_text(
        "(",
        pc.utf8_slice_codeunits(ids, 3, 5),
        ") ",
        pc.utf8_slice_codeunits(ids, 5, 10),
        "-",
        pc.utf8_slice_codeunits(ids, 10, 14),
    )
    out = pc.if_else(national, nat, ids)
    return pc.if_else(upper, pc.utf8_upper(ids), out)


def write_landing_file(landing: Path, kind: str, day: date, table: pa.Table, fmt: str) -> None:
    """``<landing>/<kind>/date=<day>/part-0.<fmt>``."""
    folder = landing / kind / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        pq.write_table(table, folder / "part-0.parquet", compression="zstd")
    else:
        pacsv.write_csv(table, folder / "part-0.csv")


def _timestamps(day: date, seconds: np.ndarray, fmt: str, offsets: np.ndarray | None = None) -> pa.Array:
    if fmt == "parquet":
        return utc_timestamps(day, seconds, offsets)
    return iso_local(day, seconds, offsets)


def write_attempts(
    landing: Path,
    fmt: str,
    day: date,
    w: World,
    person_ids: pa.Array,
    attempt_ids: pa.Array,
    attempts: DayAttempts,
    rng: np.random.Generator | None = None,
) -> None:
    """The attempts file of ``day`` (draws the messy contact ids from ``rng``, default the world's);
    in a world with zones each attempt carries its person's offset."""
    cids = messy_ids(rng or w.rng, w.ids().take(pa.array(attempts.address)), attempts.channel)
    offsets = w.utc_offset[attempts.person] if w.spec.timezones else None
    campaign = np.array(["C01", "C02", "C03", "C04", "C05"])[w.segment[attempts.person] + (day.weekday() % 3)]
    duration = attempts.duration
    table = pa.table(
        {
            "attempt_id": attempt_ids,
            "person_id": person_ids.take(pa.array(attempts.person)),
            "contact_id": cids,
            "channel": pa.array(np.array(CHANNELS)[attempts.channel]),
            "attempted_at": _timestamps(day, attempts.seconds, fmt, offsets),
            "outcome": pa.array(np.array(OUTCOMES)[attempts.outcome]),
            "campaign_id": pa.array(campaign),
            "duration_s": pa.array(duration, mask=np.isnan(duration)),
        }
    )
    write_landing_file(landing, "attempts", day, table, fmt)


def write_contacts(
    landing: Path,
    fmt: str,
    day: date,
    first_day: bool,
    w: World,
    person_ids: pa.Array,
    new: np.ndarray,
    off: np.ndarray,
) -> None:
    """Contact upserts of ``day``: the initial book on the first day (exported the evening
    before), then new addresses and deactivations."""
    rng = w.rng
    if first_day:
        init = np.flatnonzero(~w.hidden)
        init_secs = -3 * 3600 + rng.integers(0, 3600, init.size)
    else:
        init, init_secs = np.empty(0, np.int64), np.empty(0, np.int64)
    rows = np.r_[init, new, off]
    upd_secs = np.r_[init_secs, rng.integers(6 * 3600, 20 * 3600, new.size + off.size)].astype("int64")
    if not rows.size:
        return
    cch = w.a_channel[rows]
    contacts = pa.table(
        {
            "person_id": person_ids.take(pa.array(w.a_person[rows])),
            "contact_id": messy_ids(rng, w.ids().take(pa.array(rows)), cch),
            "channel": pa.array(np.array(CHANNELS)[cch]),
            "source": pa.array(SOURCES[w.a_source[rows]]),
            "consent": pa.array(w.a_consent[rows]),
            "active": pa.array(np.r_[np.ones(rows.size - off.size, bool), np.zeros(off.size, bool)]),
            "updated_at": _timestamps(day, upd_secs, fmt),
        }
    )
    write_landing_file(landing, "contacts", day, contacts, fmt)


def write_suppressions(
    landing: Path, fmt: str, day: date, person_ids: pa.Array, deceased: np.ndarray, do_not_call: np.ndarray
) -> None:
    """Person-level suppressions of ``day``: deceased and do-not-call persons."""
    sup_p = np.r_[deceased, do_not_call]
    if not sup_p.size:
        return
    sup = pa.table(
        {
            "person_id": person_ids.take(pa.array(sup_p)),
            "contact_id": pa.nulls(sup_p.size, pa.string()),
            "reason": pa.array(["deceased"] * deceased.size + ["do_not_call"] * do_not_call.size),
            "effective_from": pa.array([day] * sup_p.size, pa.date32()),
        }
    )
    if fmt == "csv":
        sup = sup.set_column(3, "effective_from", pc.strftime(sup["effective_from"], format="%Y-%m-%d"))
    write_landing_file(landing, "suppressions", day, sup, fmt)


def write_persons(landing: Path, fmt: str, day: date, w: World, person_ids: pa.Array) -> None:
    """Every person's attributes, as updated the evening before ``day`` (the first day)."""
    n = w.n
    pcols = {
        "person_id": person_ids,
        "updated_at": pa.array([f"{(day - timedelta(days=1)).isoformat()}T20:00:00{OFFSET_TEXT}"] * n),
        "age_band": pa.array(AGE_BANDS[w.age]),
        "region": pa.array(REGIONS[w.region]),
        "segment": pa.array(SEGMENTS[w.segment]),
        "balance": pa.array(w.balance),
    }
    if fmt == "parquet":
        pcols["updated_at"] = utc_timestamps(day - timedelta(days=1), np.full(n, 20 * 3600))
    zones = w.timezone_names()
    if zones is not None:
        pcols["timezone"] = pa.array(zones)
    write_landing_file(landing, "persons", day, pa.table(pcols), fmt)


def write_truth(landing: Path, w: World, person_ids: pa.Array, day: date, t: int) -> None:
    """``truth.parquet``: p(reach) of every address of every living person, each hour of ``day``
    (the world's day ``t``), for the day's first try: an address tried the day before carries
    that day's fatigue, as a try on ``day`` would (no same-day fatigue: nothing was tried yet)."""
    live_addresses = np.flatnonzero(w.alive[w.a_person])
    ids = w.ids()
    channels, statuses = np.array(CHANNELS), np.array(["valid", "dead", "reassigned"])
    writer = None
    try:
        for lo in range(0, max(live_addresses.size, 1), _TRUTH_SLICE):
            a = live_addresses[lo : lo + _TRUTH_SLICE]
            aa = np.repeat(a, 24)
            hh = np.tile(np.arange(24), a.size)
            pr = w.p_reach(aa, hh, np.full(aa.size, day.weekday()), w.fatigue_from_yesterday(aa, t))
            part = pa.table(
                {
                    "person_id": person_ids.take(pa.array(w.a_person[aa])),
                    "contact_id": ids.take(pa.array(aa)),
                    "channel": pa.array(channels[w.a_channel[aa]]),
                    "hour": pa.array(hh.astype("int8")),
                    "p_reach": pa.array(pr, pa.float64()),
                    "active": pa.array(w.a_active[aa]),
                    "status": pa.array(statuses[w.a_status[aa]]),
                }
            )
            zones = w.timezone_names()
            if zones is not None:  # ``hour`` is the person's local hour
                part = part.append_column("timezone", pa.array(zones[w.a_person[aa]]))
            if writer is None:
                writer = pq.ParquetWriter(landing / "truth.parquet", part.schema, compression="zstd")
            writer.write_table(part)
    finally:
        if writer is not None:
            writer.close()
