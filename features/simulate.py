"""A simulated contact-centre world with ground truth, for offline evaluation.

The world (persons, addresses, how they change, the true reach probabilities) is
``features.simulated_world``; its files are written by ``features.simulated_landing``. This module
runs the days: each day the world changes, an incumbent dialer with its own biases (prefers voice
and the oldest address, uniform random hours 8-21, 1-3 tries a day, stops after two ``invalid``)
makes the attempts, and the day's landing files are written. The only Python loop is over days.

``world`` (a ``WorldSpec`` or a preset name) changes the world's structure and the incumbent. With a
``dialer`` the run is closed-loop: from the day the dialer first answers with a ranking, the same
persons as the incumbent would call are tried in the ranking's order at its ``best_hour``; every
dialling draw then comes from a per-day stream of its own, so arms facing the same world draw the
same persons, tries and outcome luck (the world's own changes stay on the world's stream).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import fields
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
    DIALER_OFFSET,
    EMAIL,
    FATIGUE_SAME_DAY,
    INCUMBENT_HOURS,
    OUTCOME_CODE,
    REASSIGNED,
    SMS,
    VOICE,
    WHATSAPP,
    DayAttempts,
    World,
    WorldSpec,
    concat_text,
    grouped_rank,
    to_text,
    world_spec,
)

log = logging.getLogger(__name__)

_O = OUTCOME_CODE


# Long on purpose: the day loop reads top to bottom as one simulated day (world changes, dialer, files).
def simulate(
    landing: Path,
    start: date,
    days: int,
    persons: int = 20000,
    seed: int = 0,
    fmt: str = "csv",
    world: WorldSpec | str | None = None,
    dialer: Callable[[int, date, World], Any] | None = None,
) -> dict[str, Any]:
    """Simulate ``days`` days from ``start`` and write landing files plus the ground truth.

    Deterministic for ``seed``. Returns figures: persons, contacts, attempts, outcome mix, churn.
    ``dialer(t, day, world)``, called before each day's attempts, returns None or ``"incumbent"``
    (the incumbent dials), ``"truth"`` (the truth's ranking) or a priority table (person_id,
    contact_id, rank, best_hour) to follow; ``closed_loop`` in the figures counts its days.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', not {fmt!r}")
    if days < 1 or persons < 1:
        raise ValueError("days and persons must be positive")
    t0 = time.perf_counter()
    landing = Path(landing)
    landing.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    spec = world_spec(world) if isinstance(world, str) else world
    w = World(rng, persons, start, spec)
    person_ids = person_id_of(np.arange(persons))
    counts = {o: 0 for o in OUTCOMES}
    stats = dict.fromkeys(
        ("died", "reassigned", "new_addresses", "deactivated", "deceased", "do_not_call"), 0
    )
    truth_parts: list[pa.Table] = []
    n_attempts = 0
    stats["closed_loop"] = 0

    for t in range(days):
        day = start + timedelta(days=t)
        died, reassigned = w.churn(t)
        alive_before, deceased, do_not_call = w.person_suppressions()
        new = w.arrivals(t, alive_before)
        off = w.deactivations()
        if dialer is None:
            attempts = _dial(w, t, day.weekday()).in_time_order()
        else:
            plan = dialer(t, day, w)
            stats["closed_loop"] += not (plan is None or isinstance(plan, str) and plan == "incumbent")
            attempts = closed_loop_day(w, t, day, seed, person_ids, plan).in_time_order()
        _learn(w, attempts, t, counts)
        m = attempts.address.size
        attempt_ids = concat_text(
            "A", pc.utf8_lpad(to_text(np.arange(n_attempts, n_attempts + m)), width=9, padding="0")
        )
        n_attempts += m
        # a closed-loop run keeps the world's stream for the world: its attempt counts differ by arm
        messy = w.rng if dialer is None else np.random.default_rng([seed, 3, t])
        write_attempts(landing, fmt, day, w, person_ids, attempt_ids, attempts, messy)
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
            list(stats)[:6],
            (died, reassigned, new.size, off.size, deceased.size, do_not_call.size),
            strict=True,
        ):
            stats[key] += value

    # the ground truth on the day after the last one: the day a ranking built at the end is used
    write_truth(landing, w, person_ids, start + timedelta(days=days), days)
    pq.write_table(pa.concat_tables(truth_parts), landing / "truth_attempts.parquet", compression="zstd")
    if dialer is None:
        del stats["closed_loop"]  # the figures of an open-loop run stay as they were
    out = _summary(landing, start, days, persons, seed, fmt, w, n_attempts, counts, stats)
    if w.spec != WorldSpec():
        out["world"] = w.spec.name
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

_REACHED = np.array([_O["right_party"], _O["converted"], _O["opt_out"]])
_SEGMENT_CALLS = np.array([0.95, 1.3, 1.0])


def _dial(w: World, t: int, dow: int) -> DayAttempts:
    """The incumbent dialer's attempts of day ``t`` and what came of them."""
    address, person, seconds = _choose_attempts(w)
    return _stop_at_reach(_outcomes(w, t, dow, address, person, seconds, w.rng), w.spec.stop_at_reach)


def _book(w: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The usable addresses grouped by person in the incumbent's order (oldest first, or the
    book's source order), and the cumulative draw weights that favour voice and the oldest."""
    usable = np.flatnonzero(w.usable())
    keys = (usable, w.a_created[usable], w.a_person[usable])
    if w.spec.incumbent_order == "source":
        keys = (usable, w.a_created[usable], w.a_source[usable], w.a_person[usable])
    ua = usable[np.lexsort(keys)]
    up = w.a_person[ua]
    weight = DIALER_CHANNEL_PREF[w.a_channel[ua]] * DIALER_AGE_DECAY ** grouped_rank(up)
    return ua, up, np.cumsum(weight)


def _choose_attempts(w: World) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``call_share`` of persons (by segment), 1-3 tries each, on addresses picked by the incumbent's
    order; uniform random seconds in its hours. Returns (address, person, seconds)."""
    rng = w.rng
    ua, up, cum = _book(w)
    cand = np.unique(up)
    p_sel = w.spec.call_share * _SEGMENT_CALLS[w.segment[cand]]
    chosen = cand[rng.random(cand.size) < p_sel]
    k = rng.choice([1, 2, 3], chosen.size, p=list(w.spec.tries))
    ap = np.repeat(chosen, k)
    weighted = w.spec.incumbent_order == "weighted"
    # the weighted draw comes before the seconds: the project's world draws in this order
    aa = _weighted_pick(ua, up, cum, ap, rng.random(ap.size)) if weighted else None
    secs = _dialer_seconds(w, ap, rng.random(ap.size) if not weighted else None, rng)
    return (aa if weighted else _source_pick(ua, up, ap, secs)), ap, secs


def _dialer_seconds(w: World, ap: np.ndarray, u: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """Uniform seconds in the incumbent's hours of its own clock, as each person's local seconds."""
    lo, hi = (h * 3600 for h in INCUMBENT_HOURS[w.spec.incumbent_hours])
    secs = rng.integers(lo, hi, ap.size) if u is None else lo + (u * (hi - lo)).astype(np.int64)
    return secs + (w.utc_offset[ap] - DIALER_OFFSET) * 3600


def _weighted_pick(
    ua: np.ndarray, up: np.ndarray, cum: np.ndarray, ap: np.ndarray, u: np.ndarray
) -> np.ndarray:
    """One address per try: a weighted draw within the person's run of the cumulative weights."""
    lo = np.searchsorted(up, ap, "left")
    hi = np.searchsorted(up, ap, "right")
    base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
    target = base + u * (cum[hi - 1] - base)
    return ua[np.minimum(np.searchsorted(cum, target, "right"), hi - 1)]


def _source_pick(ua: np.ndarray, up: np.ndarray, ap: np.ndarray, secs: np.ndarray) -> np.ndarray:
    """The person's j-th try of the day (in time order) goes to the j-th address of the book."""
    lo = np.searchsorted(up, ap, "left")
    hi = np.searchsorted(up, ap, "right")
    order = np.lexsort((secs, ap))
    j = np.empty(ap.size, np.int64)
    j[order] = grouped_rank(ap[order])
    return ua[lo + j % (hi - lo)]


def _stop_at_reach(att: DayAttempts, on: bool) -> DayAttempts:
    """Drop each person's tries after their first reach of the day (in time order)."""
    if not on or att.person.size == 0:
        return att
    o = np.lexsort((att.seconds, att.person))
    r = np.isin(att.outcome[o], _REACHED).astype(np.int64)
    cs = np.cumsum(r)
    start = np.r_[True, att.person[o][1:] != att.person[o][:-1]]
    base = np.maximum.accumulate(np.where(start, cs - r, 0))
    keep = o[(cs - r - base) == 0]
    return DayAttempts(*(getattr(att, f.name)[keep] for f in fields(att)))


def _outcomes(
    w: World,
    t: int,
    dow: int,
    aa: np.ndarray,
    ap: np.ndarray,
    secs: np.ndarray,
    rng: np.random.Generator,
    u: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> DayAttempts:
    """Draw each try's outcome from the ground truth: reached or the channel's mix of misses on a
    live address, ``invalid`` on a dead one, somebody else on a reassigned one. ``u``: the three
    uniforms of each try when the caller fixes the luck."""
    # Sort each person's tries by time (retries come later) and count same-day repeats.
    o2 = np.lexsort((secs, aa))
    same_day = np.empty(ap.size, np.int64)
    same_day[o2] = grouped_rank(aa[o2])
    hour = secs // 3600
    fatigue = FATIGUE_SAME_DAY * same_day + w.fatigue_from_yesterday(aa, t)
    pr = w.p_reach(aa, hour, np.full(ap.size, dow), fatigue)
    pcv = w.p_conv_given_reach(aa)
    ch = w.a_channel[aa]
    st = w.a_status[aa]
    u1, u2, u3 = (rng.random(ap.size), rng.random(ap.size), rng.random(ap.size)) if u is None else u
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


# --- closed loop -------------------------------------------------------------------------------------

_PLAN_HOURS = np.arange(8, 22)  # the hours the truth-driven arm chooses from (the pipeline's default)


def closed_loop_day(w: World, t: int, day: date, seed: int, person_ids: pa.Array, plan: Any) -> DayAttempts:
    """Day ``t`` of a closed-loop run: the persons the incumbent would call (a per-day stream drawn
    for every person, so every arm calls the same persons with the same budget and luck), tried by
    ``plan`` (see ``simulate``) at most their budget of 1-3 tries, stopping at a reach."""
    rng, called, ok = _called_stream(w, t, seed)
    n = w.n
    budget = rng.choice([1, 2, 3], n, p=list(w.spec.tries))
    u_hour, u_addr = rng.random((n, 3)), rng.random((n, 3))
    luck = rng.random((3, n, 3))
    if plan is None or isinstance(plan, str) and plan == "incumbent":
        ap = np.repeat(called, budget[called])
        j = grouped_rank(ap)
        ua, up, cum = _book(w)
        secs = _dialer_seconds(w, ap, u_hour[ap, j], rng)
        weighted = w.spec.incumbent_order == "weighted"
        aa = _weighted_pick(ua, up, cum, ap, u_addr[ap, j]) if weighted else _source_pick(ua, up, ap, secs)
    else:
        if isinstance(plan, str) and plan == "truth":
            ap, aa, hour = _truth_plan(w, called, day, ok)
        else:
            ap, aa, hour = _table_plan(w, called, person_ids, plan)
        j = grouped_rank(ap)
        keep = j < budget[ap]
        ap, aa, hour, j = ap[keep], aa[keep], hour[keep], j[keep]
        # tries in rank order within the hour when two ranks share one
        secs = hour * 3600 + (j * 1200 + u_hour[ap, j] * 1200).astype(np.int64)
    u = (luck[0][ap, j], luck[1][ap, j], luck[2][ap, j])
    return _stop_at_reach(_outcomes(w, t, day.weekday(), aa, ap, secs, rng, u), True)


def person_id_of(persons: np.ndarray) -> pa.Array:
    """The landing files' ``person_id`` of the world's persons ``persons`` (indices)."""
    return concat_text("P", pc.utf8_lpad(to_text(persons), width=7, padding="0"))


def _called_stream(w: World, t: int, seed: int) -> tuple[np.random.Generator, np.ndarray, np.ndarray]:
    """Day ``t``'s closed-loop stream (after the draw of who is called), the called persons (those
    the incumbent's call share selects that have an address it would still try) and those
    addresses (``World.usable``)."""
    rng = np.random.default_rng([seed, 1, t])
    sel = rng.random(w.n) < w.spec.call_share * _SEGMENT_CALLS[w.segment]
    ok = w.usable()
    has = np.zeros(w.n, bool)
    has[w.a_person[ok]] = True
    return rng, np.flatnonzero(sel & has), ok


def called_persons(w: World, t: int, seed: int) -> np.ndarray:
    """The persons every arm of a closed-loop run calls on day ``t`` (a plan needs rows for them only)."""
    return _called_stream(w, t, seed)[1]


def _truth_plan(
    w: World, called: np.ndarray, day: date, ok: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each called person's usable addresses ranked by the true p at their true best hour."""
    a = np.flatnonzero(ok & np.isin(w.a_person, called))
    best, hour = true_best_hours(w, a, day)
    o = np.lexsort((a, -best, w.a_person[a]))
    return w.a_person[a[o]], a[o], hour[o]


def true_best_hours(w: World, a: np.ndarray, day: date) -> tuple[np.ndarray, np.ndarray]:
    """The true best p(reach) of addresses ``a`` on ``day`` over the truth arm's hours, and that hour."""
    hh = np.tile(_PLAN_HOURS, a.size)
    p = w.p_reach(np.repeat(a, _PLAN_HOURS.size), hh, np.full(hh.size, day.weekday())).reshape(a.size, -1)
    return p.max(axis=1), _PLAN_HOURS[p.argmax(axis=1)]


def _table_plan(
    w: World, called: np.ndarray, person_ids: pa.Array, plan: pa.Table
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The called persons' rows of a priority table in rank order, on addresses the dialer may
    still use (its own compliance rules: active, consented, not opted out, person not blocked)."""
    person, address = (
        pc.fill_null(pc.index_in(plan[c], value_set=ids), -1).to_numpy().astype(np.int64)
        for c, ids in (("person_id", person_ids), ("contact_id", w.ids()))
    )
    rank = plan["rank"].to_numpy(zero_copy_only=False)
    hour = plan["best_hour"].to_numpy(zero_copy_only=False).astype(np.int64)
    known = (person >= 0) & (address >= 0)
    person, address = np.maximum(person, 0), np.maximum(address, 0)
    allowed = w.a_active & w.a_consent & ~w.a_optout & w.alive[w.a_person] & ~w.blocked[w.a_person]
    keep = known & np.isin(person, called) & (w.a_person[address] == person) & allowed[address]
    o = np.flatnonzero(keep)[np.lexsort((rank[keep], person[keep]))]
    return person[o], address[o], hour[o]


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
