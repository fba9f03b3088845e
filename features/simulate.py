"""A simulated contact-centre world with ground truth, for offline evaluation.

The world (persons, addresses, how they change, the true reach probabilities) is
``features.simulated_world``; its files are written by ``features.simulated_landing``. This module
runs the days: each day the world changes, an incumbent dialer with its own biases (prefers voice
and the oldest address, uniform random hours 8-21, 1-3 tries a day, stops after two ``invalid``)
makes the attempts, and the day's landing files are written. The only Python loop is over days.
"""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contactrank.features.schema import OUTCOMES
from contactrank.features.simulated_landing import (
    write_attempts,
    write_contacts,
    write_persons,
    write_suppressions,
    write_truth,
)
from contactrank.features.simulated_world import (
    DEAD,
    DIALER_AGE_DECAY,
    DIALER_CHANNEL_PREF,
    EMAIL,
    FATIGUE_SAME_DAY,
    FATIGUE_YESTERDAY,
    OUTCOME_CODE,
    REASSIGNED,
    SMS,
    VOICE,
    WHATSAPP,
    DayAttempts,
    World,
    concat_text,
    grouped_rank,
    to_text,
)

log = logging.getLogger(__name__)

_O = OUTCOME_CODE


def simulate(
    landing: Path,
    start: date,
    days: int,
    persons: int = 20000,
    seed: int = 0,
    fmt: str = "csv",
) -> dict[str, Any]:
    """Simulate ``days`` days from ``start`` and write landing files plus the ground truth.

    Deterministic for ``seed``. Returns figures: persons, contacts, attempts, outcome mix, churn.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")
    if days < 1 or persons < 1:
        raise ValueError("days and persons must be positive")
    t0 = time.perf_counter()
    landing = Path(landing)
    landing.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w = World(rng, persons, start)
    person_ids = concat_text("P", pc.utf8_lpad(to_text(np.arange(persons)), width=7, padding="0"))
    counts = {o: 0 for o in OUTCOMES}
    stats = dict.fromkeys(
        ("died", "reassigned", "new_addresses", "deactivated", "deceased", "do_not_call"), 0
    )
    truth_parts: list[pa.Table] = []
    n_attempts = 0

    for t in range(days):
        day = start + timedelta(days=t)
        died, reassigned = w.churn(t)
        alive_before, deceased, do_not_call = w.person_suppressions()
        new = w.arrivals(t, alive_before)
        off = w.deactivations()
        attempts = _dial(w, t, day.weekday()).in_time_order()
        _learn(w, attempts, t, counts)
        m = attempts.address.size
        attempt_ids = concat_text(
            "A", pc.utf8_lpad(to_text(np.arange(n_attempts, n_attempts + m)), width=9, padding="0")
        )
        n_attempts += m
        write_attempts(landing, fmt, day, w, person_ids, attempt_ids, attempts)
        truth_parts.append(
            pa.table(
                {
                    "attempt_id": attempt_ids,
                    "p_reach": attempts.p_reach,
                    "p_conversion": attempts.p_reach * attempts.p_conversion_given_reach,
                }
            )
        )
        write_contacts(landing, fmt, day, t == 0, w, person_ids, new, off)
        write_suppressions(landing, fmt, day, person_ids, deceased, do_not_call)
        if t == 0:
            write_persons(landing, fmt, day, w, person_ids)
        for key, value in zip(
            stats, (died, reassigned, new.size, off.size, deceased.size, do_not_call.size), strict=True
        ):
            stats[key] += value

    # the ground truth on the day after the last one: the day a ranking built at the end is used
    write_truth(landing, w, person_ids, start + timedelta(days=days))
    pq.write_table(pa.concat_tables(truth_parts), landing / "truth_attempts.parquet", compression="zstd")
    out = _summary(landing, start, days, persons, seed, fmt, w, n_attempts, counts, stats)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    log.info(
        "simulated %d attempts over %d days for %d persons in %.1fs",
        n_attempts,
        days,
        persons,
        out["seconds"],
    )
    return out


# --- the incumbent dialer ---------------------------------------------------------------------------


def _dial(w: World, t: int, dow: int) -> DayAttempts:
    """The incumbent dialer's attempts of day ``t`` and what came of them."""
    address, person, seconds = _choose_attempts(w)
    return _outcomes(w, t, dow, address, person, seconds)


def _choose_attempts(w: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """10-15 % of persons, 1-3 tries each, on addresses drawn with weights that favour voice and
    the oldest address; uniform random seconds from 8:00 to 22:00. Returns (address, person, seconds)."""
    rng = w.rng
    usable = np.flatnonzero(w.usable())
    order = np.lexsort((usable, w.a_created[usable], w.a_person[usable]))
    ua = usable[order]
    up = w.a_person[ua]
    rank = grouped_rank(up)
    weight = DIALER_CHANNEL_PREF[w.a_channel[ua]] * DIALER_AGE_DECAY**rank
    cum = np.cumsum(weight)
    cand = np.unique(up)
    p_sel = 0.125 * np.array([0.95, 1.3, 1.0])[w.segment[cand]]
    chosen = cand[rng.random(cand.size) < p_sel]
    k = rng.choice([1, 2, 3], chosen.size, p=[0.5, 0.3, 0.2])
    ap = np.repeat(chosen, k)
    # one address per try: a weighted draw within the person's run of the cumulative weights
    lo = np.searchsorted(up, ap, "left")
    hi = np.searchsorted(up, ap, "right")
    base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
    target = base + rng.random(ap.size) * (cum[hi - 1] - base)
    j = np.minimum(np.searchsorted(cum, target, "right"), hi - 1)
    aa = ua[j]
    secs = rng.integers(8 * 3600, 22 * 3600, ap.size)
    return aa, ap, secs


def _outcomes(w: World, t: int, dow: int, aa: np.ndarray, ap: np.ndarray, secs: np.ndarray) -> DayAttempts:
    """Draw each try's outcome from the ground truth: reached or the channel's mix of misses on a
    live address, ``invalid`` on a dead one, somebody else on a reassigned one."""
    rng = w.rng
    # Sort each person's tries by time (retries come later) and count same-day repeats.
    o2 = np.lexsort((secs, aa))
    same_day = np.empty(ap.size, np.int64)
    same_day[o2] = grouped_rank(aa[o2])
    hour = secs // 3600
    fatigue = FATIGUE_SAME_DAY * same_day + np.where(w.a_last_attempt[aa] == t - 1, FATIGUE_YESTERDAY, 0.0)
    pr = w.p_reach(aa, hour, np.full(ap.size, dow), fatigue)
    pcv = w.p_conv_given_reach(aa)
    ch = w.a_channel[aa]
    st = w.a_status[aa]
    u1, u2, u3 = rng.random(ap.size), rng.random(ap.size), rng.random(ap.size)
    reached = u1 < pr
    outcome = np.full(ap.size, _O["no_answer"])
    # Not reached on a live address: the channel's mix of misses.
    voice = ch == VOICE
    miss = np.where(
        voice,
        np.select(
            [u2 < 0.5, u2 < 0.75, u2 < 0.85], [_O["no_answer"], _O["voicemail"], _O["busy"]], _O["rejected"]
        ),
        np.where(u2 < 0.9, _O["no_answer"], _O["rejected"]),
    )
    outcome = np.where(~reached, miss, outcome)
    p_oo = np.where((ch == SMS) | (ch == WHATSAPP), 0.04, 0.02)
    outcome = np.where(
        reached,
        np.where(u3 < pcv, _O["converted"], np.where(u3 < pcv + p_oo, _O["opt_out"], _O["right_party"])),
        outcome,
    )
    # Dead addresses: invalid, sometimes mis-detected as no_answer.
    p_inv = np.where(ch == EMAIL, 0.95, 0.85)
    outcome = np.where(st == DEAD, np.where(u2 < p_inv, _O["invalid"], _O["no_answer"]), outcome)
    # Reassigned numbers: somebody else answers.
    p_wp = np.where(voice, 0.35, 0.2)
    outcome = np.where(
        st == REASSIGNED,
        np.where(
            u2 < p_wp, _O["wrong_party"], np.where(voice & (u3 < 0.4), _O["voicemail"], _O["no_answer"])
        ),
        outcome,
    )
    duration = np.where(
        voice & reached,
        np.round(rng.exponential(120.0, ap.size) + 5, 1),
        np.where(voice & (outcome == _O["wrong_party"]), np.round(rng.uniform(3, 20, ap.size), 1), np.nan),
    )
    return DayAttempts(aa, ap, secs, outcome, ch, duration, pr, pcv)


def _learn(w: World, attempts: DayAttempts, t: int, counts: dict[str, int]) -> None:
    """What the dialer learns from the day: invalid addresses, opt-outs, when it last tried."""
    aa, outcome = attempts.address, attempts.outcome
    np.add.at(w.a_invalid_seen, aa[outcome == _O["invalid"]], 1)
    w.a_optout[aa[outcome == _O["opt_out"]]] = True
    w.a_last_attempt[aa] = t
    for o, c in zip(*np.unique(outcome, return_counts=True), strict=True):
        counts[OUTCOMES[o]] += int(c)


def _summary(
    landing: Path,
    start: date,
    days: int,
    persons: int,
    seed: int,
    fmt: str,
    w: World,
    n_attempts: int,
    counts: dict[str, int],
    stats: dict[str, int],
) -> dict[str, Any]:
    mix = {o: round(c / max(n_attempts, 1), 4) for o, c in counts.items()}
    return {
        "landing": str(landing),
        "start": start.isoformat(),
        "days": days,
        "persons": persons,
        "seed": seed,
        "format": fmt,
        "contacts": int(w.a_person.size),
        "attempts": int(n_attempts),
        "outcome_mix": mix,
        "reach_rate": round(
            sum(counts[o] for o in ("right_party", "converted", "opt_out")) / max(n_attempts, 1), 4
        ),
        **stats,
    }
