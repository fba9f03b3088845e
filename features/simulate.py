"""A simulated contact-centre world with ground truth, for offline evaluation (issue 2 item 3).

Persons have a latent responsiveness shifted by their attributes (age band, region, segment,
balance), a preferred hour-of-day window, day-of-week habits and a per-channel affinity. Each has
1-6 addresses over voice/sms/email/whatsapp that are valid, dead (-> ``invalid``, sometimes
mis-detected as ``no_answer``) or reassigned (-> ``wrong_party``). Over time numbers die or are
reassigned, and people "come back" on new addresses that arrive as contact upserts with source
``enrichment``. An incumbent dialer with its own biases (prefers voice and the oldest address,
uniform random hours 8-21, 1-3 tries a day, stops after two ``invalid``) makes the attempts.

Everything is vectorised with numpy over persons/addresses/attempts; the only Python loop is over
days. Landing files follow CONTRACT.md §1 (timestamps ISO 8601 with a ``-03:00`` offset in CSV,
UTC timestamps in Parquet). ``truth.parquet`` holds p(reach | person, contact, hour) on the day
after the last simulated day (the day a ranking built at the end date is used) and
``truth_attempts.parquet`` the true p_reach / p_conversion of every simulated attempt.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from contactrank.features.schema import CHANNELS, OUTCOMES

log = logging.getLogger(__name__)

OFFSET = timedelta(hours=-3)  # the simulated providers give local time at -03:00 (Brasília)
_OFFSET_TEXT = "-03:00"

AGE_BANDS = np.array(["18-29", "30-44", "45-59", "60+"])
REGIONS = np.array(["SP", "RJ", "MG", "NE", "S"])
SEGMENTS = np.array(["retail", "premium", "sme"])
SOURCES = np.array(["customer", "bureau", "enrichment"])
_REGION_DDD = [
    np.array([11, 12, 13, 14, 15, 16, 17, 18, 19]),
    np.array([21, 22, 24]),
    np.array([31, 32, 33, 34, 35, 37, 38]),
    np.array([71, 75, 79, 81, 83, 84, 85, 86]),
    np.array([41, 43, 47, 48, 51, 53, 54]),
]

VOICE, SMS, EMAIL, WHATSAPP = range(4)
VALID, DEAD, REASSIGNED = range(3)
_O = {name: i for i, name in enumerate(OUTCOMES)}

# Ground-truth effects (logit scale).
_BASE = -0.9
_CHANNEL_BASE = np.array([-0.35, -0.9, -1.3, 0.25])
_AGE_RESP = np.array([-0.35, 0.0, 0.2, 0.4])
_REGION_RESP = np.array([0.0, -0.2, 0.1, -0.15, 0.2])
_SEGMENT_RESP = np.array([0.0, 0.3, -0.2])
_SEGMENT_CONV = np.array([0.0, 0.5, -0.3])
_HOUR_WEIGHT = np.array([1.0, 0.7, 0.3, 0.8])  # how much the hour matters per channel
_COMEBACK_BOOST = 0.7  # a person's new number is their live one
_FATIGUE_SAME_DAY = -0.45
_FATIGUE_YESTERDAY = -0.2

# Incumbent dialer biases.
_DIALER_CHANNEL_PREF = np.array([4.0, 1.0, 1.0, 2.0])
_DIALER_AGE_DECAY = 0.55  # weight multiplier per rank of address age (oldest first)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _str(values: np.ndarray) -> pa.Array:
    return pa.array(values).cast(pa.string())


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


class _World:
    """Persons and addresses as parallel numpy arrays; addresses grow by concatenation."""

    def __init__(self, rng: np.random.Generator, n: int, start: date) -> None:
        self.rng = rng
        self.start = start
        self.n = n
        self.age = rng.choice(4, n, p=[0.25, 0.3, 0.25, 0.2])
        self.region = rng.choice(5, n, p=[0.35, 0.15, 0.12, 0.23, 0.15])
        self.segment = rng.choice(3, n, p=[0.7, 0.15, 0.15])
        self.balance = np.round(rng.lognormal(7.0, 1.2, n), 2)
        zbal = (np.log(self.balance) - 7.0) / 1.2
        self.zbal = zbal
        self.resp = (
            rng.normal(0.0, 0.8, n)
            + _AGE_RESP[self.age]
            + _REGION_RESP[self.region]
            + _SEGMENT_RESP[self.segment]
            + 0.15 * zbal
        )
        # Hour habits: morning / midday / evening types, the young lean to evenings.
        p_type = np.where(
            self.age[:, None] == 0,
            [0.15, 0.2, 0.65],
            np.where(self.age[:, None] == 3, [0.6, 0.25, 0.15], [0.3, 0.3, 0.4]),
        )
        u = rng.random(n)
        htype = (u[:, None] > np.cumsum(p_type, axis=1)).sum(axis=1)
        self.peak = np.array([9.5, 13.0, 19.0])[htype] + rng.normal(0.0, 1.0, n)
        self.width = rng.uniform(1.5, 3.0, n)
        self.hour_amp = rng.uniform(0.8, 2.0, n)
        # Day-of-week habits: some are easier on weekends, others on weekdays.
        weekend = np.array([0, 0, 0, 0, 0, 1, 1], dtype=float)
        wtype = rng.choice([-0.5, 0.0, 0.5], n, p=[0.3, 0.4, 0.3])
        self.dow = wtype[:, None] * (weekend - 0.3) + rng.normal(0.0, 0.15, (n, 7))
        aff = rng.normal(0.0, 0.7, (n, 4)) + _CHANNEL_BASE
        aff[:, WHATSAPP] += np.where(self.age == 0, 0.5, np.where(self.age == 3, -0.5, 0.0))
        aff[:, VOICE] += np.where(self.age == 3, 0.4, 0.0)
        self.aff = aff
        self.conv_logit = -1.1 + _SEGMENT_CONV[self.segment] - 0.3 * zbal + 0.3 * self.resp
        self.alive = np.ones(n, bool)
        self.blocked = np.zeros(n, bool)  # person-level suppression known to the dialer
        self.ddd = np.empty(n, np.int64)
        for r, codes in enumerate(_REGION_DDD):
            m = self.region == r
            self.ddd[m] = rng.choice(codes, m.sum())

        # Initial addresses: 1-6 per person; the oldest is the most likely to be stale.
        k = rng.choice(np.arange(1, 7), n, p=[0.2, 0.25, 0.22, 0.15, 0.1, 0.08])
        person = np.repeat(np.arange(n), k)
        rank = np.arange(person.size) - np.repeat(np.cumsum(k) - k, k)
        channel = rng.choice(4, person.size, p=[0.45, 0.15, 0.22, 0.18])
        channel[rank == 0] = np.where(rng.random((rank == 0).sum()) < 0.8, VOICE, EMAIL)
        u = rng.random(person.size)
        old = rank == 0
        status = np.where(
            u < np.where(old, 0.62, 0.8), VALID, np.where(u < np.where(old, 0.85, 0.92), DEAD, REASSIGNED)
        )
        status[(channel == EMAIL) & (status == REASSIGNED)] = DEAD  # e-mails bounce, they are not reassigned
        self.a_person = np.empty(0, np.int64)
        self.a_channel = np.empty(0, np.int64)
        self.a_status = np.empty(0, np.int64)
        self.a_quality = np.empty(0, float)
        self.a_created = np.empty(0, np.int64)  # day index; initial addresses are negative (older = smaller)
        self.a_source = np.empty(0, np.int64)
        self.a_active = np.empty(0, bool)
        self.a_consent = np.empty(0, bool)
        self.a_optout = np.empty(0, bool)
        self.a_invalid_seen = np.empty(0, np.int64)
        self.a_last_attempt = np.empty(0, np.int64)
        self.a_ids: list[pa.Array] = []
        self._add(
            person,
            channel,
            status,
            rng.normal(0.0, 0.6, person.size) - 0.1 * rank,
            created=rank - 10,
            source=rng.choice(2, person.size, p=[0.6, 0.4]),
            consent=rng.random(person.size) > 0.02,
        )
        self.hidden = rng.random(person.size) < 0.03  # known to the dialer, never in a contacts file
        self.pending = np.empty((0, 3), np.int64)  # (person, due day, channel) of coming-back addresses

    # --- addresses --------------------------------------------------------------------------
    def _add(self, person, channel, status, quality, created, source, consent) -> np.ndarray:
        first = self.a_person.size
        idx = np.arange(first, first + person.size)
        cat = np.concatenate
        self.a_person = cat([self.a_person, person])
        self.a_channel = cat([self.a_channel, channel])
        self.a_status = cat([self.a_status, status])
        self.a_quality = cat([self.a_quality, quality])
        self.a_created = cat([self.a_created, np.broadcast_to(created, person.shape)])
        self.a_source = cat([self.a_source, np.broadcast_to(source, person.shape)])
        self.a_active = cat([self.a_active, np.ones(person.size, bool)])
        self.a_consent = cat([self.a_consent, np.broadcast_to(consent, person.shape)])
        self.a_optout = cat([self.a_optout, np.zeros(person.size, bool)])
        self.a_invalid_seen = cat([self.a_invalid_seen, np.zeros(person.size, np.int64)])
        self.a_last_attempt = cat([self.a_last_attempt, np.full(person.size, -99, np.int64)])
        # Unique ids: phones +55 DDD 9XXXXXXXX (the address index makes them unique), e-mails.
        phone = _join("+55", _str(self.ddd[person] * 10**9 + 900_000_000 + idx))
        email = _join("p", _str(person), ".", _str(idx), "@mail.example")
        self.a_ids.append(pc.if_else(pa.array(channel == EMAIL), email, phone))
        return idx

    def ids(self) -> pa.Array:
        if len(self.a_ids) > 1:
            self.a_ids = [pa.concat_arrays(self.a_ids)]
        return self.a_ids[0]

    def usable(self) -> np.ndarray:
        """Addresses the incumbent dialer would still try."""
        return (
            self.a_active
            & self.a_consent
            & ~self.a_optout
            & (self.a_invalid_seen < 2)
            & self.alive[self.a_person]
            & ~self.blocked[self.a_person]
        )

    # --- ground truth ---------------------------------------------------------------------------
    def p_reach(
        self, a: np.ndarray, hour: np.ndarray, dow: np.ndarray, fatigue: np.ndarray | float = 0.0
    ) -> np.ndarray:
        p = self.a_person[a]
        ch = self.a_channel[a]
        hour_term = self.hour_amp[p] * (
            np.exp(-((hour - self.peak[p]) ** 2) / (2 * self.width[p] ** 2)) - 0.45
        )
        comeback = np.where(self.a_source[a] == 2, _COMEBACK_BOOST, 0.0)
        logit = (
            _BASE
            + self.resp[p]
            + self.aff[p, ch]
            + self.a_quality[a]
            + comeback
            + _HOUR_WEIGHT[ch] * hour_term
            + self.dow[p, dow]
            + fatigue
        )
        live = (self.a_status[a] == VALID) & self.alive[p]
        return np.where(live, _sigmoid(logit), 0.0)

    def p_conv_given_reach(self, a: np.ndarray) -> np.ndarray:
        return _sigmoid(self.conv_logit[self.a_person[a]])


def _grouped_rank(keys: np.ndarray) -> np.ndarray:
    """0-based position of each element within its run of equal (sorted) keys."""
    n = keys.size
    if n == 0:
        return np.zeros(0, np.int64)
    start = np.r_[True, keys[1:] != keys[:-1]]
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    return np.arange(n) - first


def _iso_local(day: date, seconds: np.ndarray) -> pa.Array:
    """ISO 8601 local timestamps with the -03:00 offset for seconds since local midnight of ``day``."""
    base = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    naive = pa.array((base + seconds).astype("int64"), type=pa.timestamp("s"))
    return _join(pc.strftime(naive, format="%Y-%m-%dT%H:%M:%S"), _OFFSET_TEXT)


def _utc(day: date, seconds: np.ndarray) -> pa.Array:
    base = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    utc = (base + seconds.astype("int64") - int(OFFSET.total_seconds())) * 10**6
    return pa.array(utc, type=pa.timestamp("us", tz="UTC"))


def _messy_ids(rng: np.random.Generator, ids: pa.Array, channel: np.ndarray) -> pa.Array:
    """Deliver some phones in national format and some e-mails upper-cased, as providers do."""
    n = len(ids)
    u = rng.random(n)
    national = pa.array((channel != EMAIL) & (u < 0.12))
    upper = pa.array((channel == EMAIL) & (u < 0.1))
    # +55 DD 9XXXX XXXX -> (DD) 9XXXX-XXXX
    nat = _join(
        "(",
        pc.utf8_slice_codeunits(ids, 3, 5),
        ") ",
        pc.utf8_slice_codeunits(ids, 5, 10),
        "-",
        pc.utf8_slice_codeunits(ids, 10, 14),
    )
    out = pc.if_else(national, nat, ids)
    return pc.if_else(upper, pc.utf8_upper(ids), out)


def _write(landing: Path, kind: str, day: date, table: pa.Table, fmt: str) -> None:
    folder = landing / kind / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        pq.write_table(table, folder / "part-0.parquet", compression="zstd")
    else:
        pacsv.write_csv(table, folder / "part-0.csv")


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
    w = _World(rng, persons, start)
    n = persons
    person_ids = _join("P", pc.utf8_lpad(_str(np.arange(n)), width=7, padding="0"))
    counts = {o: 0 for o in OUTCOMES}
    stats = {
        "died": 0,
        "reassigned": 0,
        "new_addresses": 0,
        "deactivated": 0,
        "deceased": 0,
        "do_not_call": 0,
    }
    truth_parts: list[pa.Table] = []
    n_attempts = 0

    for t in range(days):
        day = start + timedelta(days=t)
        dow = day.weekday()
        # 1. churn: live phones die or are reassigned; e-mails start bouncing.
        valid = w.a_status == VALID
        is_phone = w.a_channel != EMAIL
        u = rng.random(w.a_person.size)
        die = valid & (u < np.where(is_phone, 0.003, 0.001))
        reassign = valid & is_phone & ~die & (u > 1 - 0.0015)
        w.a_status[die] = DEAD
        w.a_status[reassign] = REASSIGNED
        stats["died"] += int(die.sum())
        stats["reassigned"] += int(reassign.sum())
        lost = np.flatnonzero(die | reassign)
        back = lost[rng.random(lost.size) < 0.6]  # the person comes back on a new address later
        if back.size:
            lag = 1 + rng.geometric(1 / 7, back.size)
            ch = np.where(rng.random(back.size) < 0.7, w.a_channel[back], rng.choice(4, back.size))
            w.pending = np.vstack([w.pending, np.c_[w.a_person[back], t + lag, ch]])

        # 2. deaths and do-not-call requests (person-level suppressions).
        alive_idx = np.flatnonzero(w.alive)
        dead_p = alive_idx[rng.random(alive_idx.size) < 0.00004]
        w.alive[dead_p] = False
        dnc_p = alive_idx[rng.random(alive_idx.size) < 0.00005]
        dnc_p = dnc_p[w.alive[dnc_p] & ~w.blocked[dnc_p]]
        w.blocked[dnc_p] = True
        stats["deceased"] += dead_p.size
        stats["do_not_call"] += dnc_p.size

        # 3. new addresses: comebacks due today plus a trickle of enrichment.
        due = w.pending[:, 1] == t
        extra = alive_idx[rng.random(alive_idx.size) < 0.0005]
        new_person = np.r_[w.pending[due, 0], extra]
        new_channel = np.r_[w.pending[due, 2], rng.choice(4, extra.size, p=[0.5, 0.1, 0.2, 0.2])]
        w.pending = w.pending[~due]
        keep = w.alive[new_person]
        new_person, new_channel = new_person[keep], new_channel[keep]
        new_idx = w._add(
            new_person,
            new_channel,
            np.where(rng.random(new_person.size) < 0.95, VALID, DEAD),
            rng.normal(0.2, 0.5, new_person.size),
            created=t,
            source=2,
            consent=True,
        )
        stats["new_addresses"] += new_idx.size

        # 4. deactivations: customers remove addresses (dead ones more often).
        act = np.flatnonzero(w.a_active)
        p_off = np.where(w.a_status[act] == VALID, 0.0003, 0.004)
        off = act[rng.random(act.size) < p_off]
        w.a_active[off] = False
        stats["deactivated"] += off.size

        # 5. the incumbent dialer: 10-15% of persons, 1-3 tries each, voice and oldest first.
        usable = np.flatnonzero(w.usable())
        order = np.lexsort((usable, w.a_created[usable], w.a_person[usable]))
        ua = usable[order]
        up = w.a_person[ua]
        rank = _grouped_rank(up)
        weight = _DIALER_CHANNEL_PREF[w.a_channel[ua]] * _DIALER_AGE_DECAY**rank
        cum = np.cumsum(weight)
        cand = np.unique(up)
        p_sel = 0.125 * np.array([0.95, 1.3, 1.0])[w.segment[cand]]
        chosen = cand[rng.random(cand.size) < p_sel]
        k = rng.choice([1, 2, 3], chosen.size, p=[0.5, 0.3, 0.2])
        ap = np.repeat(chosen, k)
        lo = np.searchsorted(up, ap, "left")
        hi = np.searchsorted(up, ap, "right")
        base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
        target = base + rng.random(ap.size) * (cum[hi - 1] - base)
        j = np.minimum(np.searchsorted(cum, target, "right"), hi - 1)
        aa = ua[j]
        secs = rng.integers(8 * 3600, 22 * 3600, ap.size)
        # Sort each person's tries by time (retries come later) and count same-day repeats.
        o2 = np.lexsort((secs, aa))
        same_day = np.empty(ap.size, np.int64)
        same_day[o2] = _grouped_rank(aa[o2])
        hour = secs // 3600
        fatigue = _FATIGUE_SAME_DAY * same_day + np.where(
            w.a_last_attempt[aa] == t - 1, _FATIGUE_YESTERDAY, 0.0
        )
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
                [u2 < 0.5, u2 < 0.75, u2 < 0.85],
                [_O["no_answer"], _O["voicemail"], _O["busy"]],
                _O["rejected"],
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
            np.where(
                voice & (outcome == _O["wrong_party"]), np.round(rng.uniform(3, 20, ap.size), 1), np.nan
            ),
        )

        # 6. what the dialer learns.
        np.add.at(w.a_invalid_seen, aa[outcome == _O["invalid"]], 1)
        w.a_optout[aa[outcome == _O["opt_out"]]] = True
        w.a_last_attempt[aa] = t
        for o, c in zip(*np.unique(outcome, return_counts=True), strict=True):
            counts[OUTCOMES[o]] += int(c)

        # 7. landing files of the day.
        m = ap.size
        order = np.argsort(secs, kind="stable")
        aa, ap, secs, outcome, ch, duration, pr, pcv = (
            x[order] for x in (aa, ap, secs, outcome, ch, duration, pr, pcv)
        )
        attempt_ids = _join(
            "A", pc.utf8_lpad(_str(np.arange(n_attempts, n_attempts + m)), width=9, padding="0")
        )
        n_attempts += m
        all_ids = w.ids()
        cids = _messy_ids(rng, all_ids.take(pa.array(aa)), ch)
        attempts = pa.table(
            {
                "attempt_id": attempt_ids,
                "person_id": person_ids.take(pa.array(ap)),
                "contact_id": cids,
                "channel": pa.array(np.array(CHANNELS)[ch]),
                "attempted_at": _utc(day, secs) if fmt == "parquet" else _iso_local(day, secs),
                "outcome": pa.array(np.array(OUTCOMES)[outcome]),
                "campaign_id": pa.array(
                    np.array(["C01", "C02", "C03", "C04", "C05"])[w.segment[ap] + (dow % 3)]
                ),
                "duration_s": pa.array(duration, mask=np.isnan(duration)),
            }
        )
        _write(landing, "attempts", day, attempts, fmt)
        truth_parts.append(pa.table({"attempt_id": attempt_ids, "p_reach": pr, "p_conversion": pr * pcv}))

        # Contacts: the initial book on day 0, then new addresses and deactivations.
        if t == 0:
            init = np.flatnonzero(~w.hidden)
            # the initial book was exported the evening before the first day
            init_secs = -3 * 3600 + rng.integers(0, 3600, init.size)
        else:
            init, init_secs = np.empty(0, np.int64), np.empty(0, np.int64)
        rows = np.r_[init, new_idx, off]
        upd_secs = np.r_[init_secs, rng.integers(6 * 3600, 20 * 3600, new_idx.size + off.size)].astype(
            "int64"
        )
        if rows.size:
            cch = w.a_channel[rows]
            contacts = pa.table(
                {
                    "person_id": person_ids.take(pa.array(w.a_person[rows])),
                    "contact_id": _messy_ids(rng, all_ids.take(pa.array(rows)), cch),
                    "channel": pa.array(np.array(CHANNELS)[cch]),
                    "source": pa.array(SOURCES[w.a_source[rows]]),
                    "consent": pa.array(w.a_consent[rows]),
                    "active": pa.array(np.r_[np.ones(rows.size - off.size, bool), np.zeros(off.size, bool)]),
                    "updated_at": _utc(day, upd_secs) if fmt == "parquet" else _iso_local(day, upd_secs),
                }
            )
            _write(landing, "contacts", day, contacts, fmt)

        # Suppressions: deceased and do-not-call persons.
        sup_p = np.r_[dead_p, dnc_p]
        if sup_p.size:
            sup = pa.table(
                {
                    "person_id": person_ids.take(pa.array(sup_p)),
                    "contact_id": pa.nulls(sup_p.size, pa.string()),
                    "reason": pa.array(["deceased"] * dead_p.size + ["do_not_call"] * dnc_p.size),
                    "effective_from": pa.array([day] * sup_p.size, pa.date32()),
                }
            )
            if fmt == "csv":
                sup = sup.set_column(
                    3, "effective_from", pc.strftime(sup["effective_from"], format="%Y-%m-%d")
                )
            _write(landing, "suppressions", day, sup, fmt)

        if t == 0:
            pcols = {
                "person_id": person_ids,
                "updated_at": pa.array(
                    [f"{(start - timedelta(days=1)).isoformat()}T20:00:00{_OFFSET_TEXT}"] * n
                ),
                "age_band": pa.array(AGE_BANDS[w.age]),
                "region": pa.array(REGIONS[w.region]),
                "segment": pa.array(SEGMENTS[w.segment]),
                "balance": pa.array(w.balance),
            }
            if fmt == "parquet":
                pcols["updated_at"] = _utc(start - timedelta(days=1), np.full(n, 20 * 3600))
            _write(landing, "persons", day, pa.table(pcols), fmt)

    # Ground truth at the end: every address of every living person, each hour, on the next day.
    # Written in slices of addresses so memory stays bounded for large worlds.
    end_next = start + timedelta(days=days)
    live_addresses = np.flatnonzero(w.alive[w.a_person])
    ids = w.ids()
    channels, statuses = np.array(CHANNELS), np.array(["valid", "dead", "reassigned"])
    writer = None
    try:
        for lo in range(0, max(live_addresses.size, 1), 50_000):
            a = live_addresses[lo : lo + 50_000]
            aa = np.repeat(a, 24)
            hh = np.tile(np.arange(24), a.size)
            pr = w.p_reach(aa, hh, np.full(aa.size, end_next.weekday()))
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
            if writer is None:
                writer = pq.ParquetWriter(landing / "truth.parquet", part.schema, compression="zstd")
            writer.write_table(part)
    finally:
        if writer is not None:
            writer.close()
    pq.write_table(pa.concat_tables(truth_parts), landing / "truth_attempts.parquet", compression="zstd")

    mix = {o: round(c / max(n_attempts, 1), 4) for o, c in counts.items()}
    out = {
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
        "seconds": round(time.perf_counter() - t0, 2),
    }
    log.info(
        "simulated %d attempts over %d days for %d persons in %.1fs",
        n_attempts,
        days,
        persons,
        out["seconds"],
    )
    return out
