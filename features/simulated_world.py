"""The simulated world: persons, their addresses, how both change day by day, and the ground truth.

Persons have a latent responsiveness shifted by their attributes (age band, region, segment,
balance), a preferred hour-of-day window, day-of-week habits and a per-channel affinity. Each has
1-6 addresses over voice/sms/email/whatsapp that are valid, dead (-> ``invalid``, sometimes
mis-detected as ``no_answer``) or reassigned (-> ``wrong_party``). Over time numbers die or are
reassigned, and people "come back" on new addresses that arrive as contact upserts with source
``enrichment``.

Everything is vectorised with numpy over persons and addresses. The order of the random draws is
part of the output: the same seed must give the same landing files, so a change that draws in
another order (or draws more) changes every later value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contactrank.features.schema import OUTCOMES

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
OUTCOME_CODE = {name: i for i, name in enumerate(OUTCOMES)}

# Ground-truth effects (logit scale).
_BASE = -0.9
_CHANNEL_BASE = np.array([-0.35, -0.9, -1.3, 0.25])
_AGE_RESP = np.array([-0.35, 0.0, 0.2, 0.4])
_REGION_RESP = np.array([0.0, -0.2, 0.1, -0.15, 0.2])
_SEGMENT_RESP = np.array([0.0, 0.3, -0.2])
_SEGMENT_CONV = np.array([0.0, 0.5, -0.3])
_HOUR_WEIGHT = np.array([1.0, 0.7, 0.3, 0.8])  # how much the hour matters per channel
_COMEBACK_BOOST = 0.7  # a person's new number is their live one
FATIGUE_SAME_DAY = -0.45
FATIGUE_YESTERDAY = -0.2
# Hour habits of the project's own world: morning / midday / evening types, the young lean to evenings.
_HABIT_CENTRES = np.array([9.5, 13.0, 19.0])
_HABIT_AMP = (0.8, 2.0)
# the types' shares by age band (AGE_BANDS)
_HABIT_SHARES = np.array([[0.15, 0.2, 0.65], [0.3, 0.3, 0.4], [0.3, 0.3, 0.4], [0.6, 0.25, 0.15]])

# The generator's form, for estimators that are told it (the judge's history ceiling).
GENERATOR = {
    "base": _BASE,
    "channel_base": _CHANNEL_BASE,
    "age_resp": _AGE_RESP,
    "region_resp": _REGION_RESP,
    "segment_resp": _SEGMENT_RESP,
    "hour_weight": _HOUR_WEIGHT,
    "comeback_boost": _COMEBACK_BOOST,
    "habit_centres": _HABIT_CENTRES,
    "habit_amp": _HABIT_AMP,
    "habit_shares": _HABIT_SHARES,
}

# Incumbent dialer biases.
DIALER_CHANNEL_PREF = np.array([4.0, 1.0, 1.0, 2.0])
DIALER_AGE_DECAY = 0.55  # weight multiplier per rank of address age (oldest first)


@dataclass(frozen=True)
class WorldSpec:
    """The knobs of a world; the defaults are the project's own world (the same draws, byte for byte).

    ``hour_groups``: (weight, peak hour, amplitude low, high) per habit group, independent of the
    attributes (None: the morning/midday/evening types tied to age). ``initial_stale``: (dead,
    reassigned) shares of the first book (None: the oldest address is the stalest).
    ``incumbent_hours``: a key of ``INCUMBENT_HOURS``, in the dialer's clock; ``incumbent_order``:
    ``weighted`` (voice and the oldest favoured) or ``source`` (the book in order, one address per
    try). ``timezones``: (IANA name, UTC offset in hours, weight); habits are in local time.
    """

    name: str = "default"
    hour_groups: tuple[tuple[float, float, float, float], ...] | None = None
    initial_stale: tuple[float, float] | None = None
    death_rate: float = 0.003  # per live phone and day; e-mails a third of it
    reassign_rate: float = 0.0015
    comeback_share: float = 0.6
    enrichment_rate: float = 0.0005
    channel_mix: tuple[float, float, float, float] = (0.45, 0.15, 0.22, 0.18)
    call_share: float = 0.125
    tries: tuple[float, float, float] = (0.5, 0.3, 0.2)
    incumbent_hours: str = "random"
    incumbent_order: str = "weighted"
    stop_at_reach: bool = False
    timezones: tuple[tuple[str, int, float], ...] | None = None

    def __post_init__(self) -> None:
        if self.incumbent_hours not in INCUMBENT_HOURS:
            raise ValueError(f"incumbent_hours must be one of {sorted(INCUMBENT_HOURS)}")
        if self.incumbent_order not in ("weighted", "source"):
            raise ValueError("incumbent_order must be 'weighted' or 'source'")


INCUMBENT_HOURS = {"random": (8, 22), "office": (9, 18), "evening": (18, 22)}
DIALER_OFFSET = -3  # the incumbent dialer's own clock (Brasília)
_HABITS = ((0.35, 19.5, 0.8, 2.0), (0.35, 9.0, 0.8, 2.0), (0.3, 13.5, 0.0, 0.3))  # evening/morning/all day
_ISSUE = dict(
    hour_groups=_HABITS,
    initial_stale=(0.2, 0.13),
    incumbent_order="source",
    stop_at_reach=True,
    tries=(0.4, 0.3, 0.3),
    enrichment_rate=0.001,
    comeback_share=0.8,
)
_BRAZIL = (
    ("America/Sao_Paulo", -3, 0.55),
    ("America/Manaus", -4, 0.2),
    ("America/Rio_Branco", -5, 0.15),
    ("America/Noronha", -2, 0.1),
)
WORLDS = {
    "default": WorldSpec(),
    "habits": WorldSpec(name="habits", **_ISSUE),
    "office_hours_incumbent": WorldSpec(
        name="office_hours_incumbent",
        **{**_ISSUE, "incumbent_hours": "office"},
        death_rate=0.006,
        reassign_rate=0.003,
        channel_mix=(0.6, 0.1, 0.1, 0.2),
    ),
    "evening_incumbent": WorldSpec(name="evening_incumbent", **{**_ISSUE, "incumbent_hours": "evening"}),
    "timezones": WorldSpec(name="timezones", **_ISSUE, timezones=_BRAZIL),
}


def world_spec(name: str, **overrides) -> WorldSpec:
    """A named preset of ``WORLDS``, with any field overridden."""
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; known: {', '.join(WORLDS)}")
    return replace(WORLDS[name], **overrides)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def to_text(values: np.ndarray) -> pa.Array:
    """Numbers as an Arrow string array (ids are built from them)."""
    return pa.array(values).cast(pa.string())


def concat_text(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of string arrays and constants."""
    return pc.binary_join_element_wise(*parts, "")


def grouped_rank(keys: np.ndarray) -> np.ndarray:
    """0-based position of each element within its run of equal (sorted) keys."""
    n = keys.size
    if n == 0:
        return np.zeros(0, np.int64)
    start = np.r_[True, keys[1:] != keys[:-1]]
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    return np.arange(n) - first


class World:
    """Persons and addresses as parallel numpy arrays; addresses grow by concatenation."""

    def __init__(self, rng: np.random.Generator, n: int, start: date, spec: WorldSpec | None = None) -> None:
        self.rng = rng
        self.start = start
        self.n = n
        self.spec = spec or WorldSpec()
        self._make_persons(rng, n)
        self._make_addresses(rng, n)
        # UTC offset (hours) of each person's clock; the draw only exists in a world with zones
        self.tz = np.zeros(n, np.int64)
        self.utc_offset = np.full(n, DIALER_OFFSET, np.int64)
        if self.spec.timezones:
            zones = self.spec.timezones
            weights = np.array([z[2] for z in zones], float)
            self.tz = rng.choice(len(zones), n, p=weights / weights.sum())
            self.utc_offset = np.array([z[1] for z in zones], np.int64)[self.tz]

    def timezone_names(self) -> np.ndarray | None:
        """Each person's IANA zone, or None in a world without zones."""
        if not self.spec.timezones:
            return None
        return np.array([z[0] for z in self.spec.timezones])[self.tz]

    def _make_persons(self, rng: np.random.Generator, n: int) -> None:
        """Attributes, responsiveness, hour and weekday habits, channel affinities, area codes."""
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
        groups = self.spec.hour_groups
        if groups is None:
            p_type = _HABIT_SHARES[self.age]
            centres, (amp_lo, amp_hi) = _HABIT_CENTRES, _HABIT_AMP
        else:
            weights = np.array([g[0] for g in groups], float)
            p_type = np.broadcast_to(weights / weights.sum(), (n, len(groups)))
            centres = np.array([g[1] for g in groups])
        u = rng.random(n)
        htype = np.minimum((u[:, None] > np.cumsum(p_type, axis=1)).sum(axis=1), len(centres) - 1)
        self.habit = htype
        self.peak = centres[htype] + rng.normal(0.0, 1.0, n)
        self.width = rng.uniform(1.5, 3.0, n)
        if groups is not None:
            amp_lo = np.array([g[2] for g in groups])[htype]
            amp_hi = np.array([g[3] for g in groups])[htype]
        self.hour_amp = rng.uniform(amp_lo, amp_hi, n)
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

    def _make_addresses(self, rng: np.random.Generator, n: int) -> None:
        """The initial address book: 1-6 addresses per person; the oldest is the most likely stale."""
        k = rng.choice(np.arange(1, 7), n, p=[0.2, 0.25, 0.22, 0.15, 0.1, 0.08])
        person = np.repeat(np.arange(n), k)
        rank = np.arange(person.size) - np.repeat(np.cumsum(k) - k, k)
        channel = rng.choice(4, person.size, p=list(self.spec.channel_mix))
        channel[rank == 0] = np.where(rng.random((rank == 0).sum()) < 0.8, VOICE, EMAIL)
        u = rng.random(person.size)
        old = rank == 0
        p_valid, p_dead = np.where(old, 0.62, 0.8), np.where(old, 0.85, 0.92)
        if self.spec.initial_stale is not None:
            dead, reassigned = self.spec.initial_stale
            p_valid, p_dead = 1.0 - dead - reassigned, 1.0 - reassigned
        status = np.where(u < p_valid, VALID, np.where(u < p_dead, DEAD, REASSIGNED))
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
        self.add_addresses(
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
    def add_addresses(self, person, channel, status, quality, created, source, consent) -> np.ndarray:
        """Append addresses (ids are unique by address index); returns their indices."""
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
        phone = concat_text("+55", to_text(self.ddd[person] * 10**9 + 900_000_000 + idx))
        email = concat_text("p", to_text(person), ".", to_text(idx), "@mail.example")
        self.a_ids.append(pc.if_else(pa.array(channel == EMAIL), email, phone))
        return idx

    def ids(self) -> pa.Array:
        """The id of every address, in address order."""
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
    def fatigue_from_yesterday(self, a: np.ndarray, t: int) -> np.ndarray:
        """The logit fatigue of a try on day ``t`` of addresses ``a``: those tried on day t-1 are tired."""
        return np.where(self.a_last_attempt[a] == t - 1, FATIGUE_YESTERDAY, 0.0)

    def p_reach(
        self, a: np.ndarray, hour: np.ndarray, dow: np.ndarray, fatigue: np.ndarray | float = 0.0
    ) -> np.ndarray:
        """True p(reach) of addresses ``a`` at local ``hour`` on weekday ``dow``; 0 when not live."""
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
        """True p(conversion | reached) of addresses ``a`` (a person-level trait)."""
        return _sigmoid(self.conv_logit[self.a_person[a]])

    # --- a day's changes (in this order: each step draws from the generator) ---------------------
    def churn(self, t: int) -> tuple[int, int]:
        """Live phones die or are reassigned and e-mails start bouncing; ``comeback_share`` of the
        persons who lost an address come back on a new one a few days later. Returns (died, reassigned)."""
        rng = self.rng
        valid = self.a_status == VALID
        is_phone = self.a_channel != EMAIL
        u = rng.random(self.a_person.size)
        spec = self.spec
        die = valid & (u < np.where(is_phone, spec.death_rate, spec.death_rate / 3))
        reassign = valid & is_phone & ~die & (u > 1 - spec.reassign_rate)
        self.a_status[die] = DEAD
        self.a_status[reassign] = REASSIGNED
        lost = np.flatnonzero(die | reassign)
        back = lost[rng.random(lost.size) < spec.comeback_share]  # back on a new address later
        if back.size:
            lag = 1 + rng.geometric(1 / 7, back.size)
            ch = np.where(rng.random(back.size) < 0.7, self.a_channel[back], rng.choice(4, back.size))
            self.pending = np.vstack([self.pending, np.c_[self.a_person[back], t + lag, ch]])
        return int(die.sum()), int(reassign.sum())

    def person_suppressions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Deaths and do-not-call requests. Returns (persons alive before, deceased, do-not-call)."""
        rng = self.rng
        alive_idx = np.flatnonzero(self.alive)
        dead_p = alive_idx[rng.random(alive_idx.size) < 0.00004]
        self.alive[dead_p] = False
        dnc_p = alive_idx[rng.random(alive_idx.size) < 0.00005]
        dnc_p = dnc_p[self.alive[dnc_p] & ~self.blocked[dnc_p]]
        self.blocked[dnc_p] = True
        return alive_idx, dead_p, dnc_p

    def arrivals(self, t: int, alive_idx: np.ndarray) -> np.ndarray:
        """New addresses: the comebacks due today plus a trickle of enrichment. Returns their indices."""
        rng = self.rng
        due = self.pending[:, 1] == t
        extra = alive_idx[rng.random(alive_idx.size) < self.spec.enrichment_rate]
        new_person = np.r_[self.pending[due, 0], extra]
        new_channel = np.r_[self.pending[due, 2], rng.choice(4, extra.size, p=[0.5, 0.1, 0.2, 0.2])]
        self.pending = self.pending[~due]
        keep = self.alive[new_person]
        new_person, new_channel = new_person[keep], new_channel[keep]
        return self.add_addresses(
            new_person,
            new_channel,
            np.where(rng.random(new_person.size) < 0.95, VALID, DEAD),
            rng.normal(0.2, 0.5, new_person.size),
            created=t,
            source=2,
            consent=True,
        )

    def deactivations(self) -> np.ndarray:
        """Customers remove addresses (dead ones more often). Returns the deactivated addresses."""
        active = np.flatnonzero(self.a_active)
        p_off = np.where(self.a_status[active] == VALID, 0.0003, 0.004)
        off = active[self.rng.random(active.size) < p_off]
        self.a_active[off] = False
        return off


@dataclass(frozen=True)
class DayAttempts:
    """The incumbent dialer's attempts of one day, one entry per attempt (parallel arrays)."""

    address: np.ndarray
    person: np.ndarray
    seconds: np.ndarray  # since local midnight
    outcome: np.ndarray  # index into OUTCOMES
    channel: np.ndarray
    duration: np.ndarray  # seconds, NaN when the call had none
    p_reach: np.ndarray  # the ground truth of each attempt
    p_conversion_given_reach: np.ndarray

    def in_time_order(self) -> DayAttempts:
        """The attempts sorted by time of day (stable: ties keep their order)."""
        order = np.argsort(self.seconds, kind="stable")
        return DayAttempts(*(getattr(self, f.name)[order] for f in fields(self)))
