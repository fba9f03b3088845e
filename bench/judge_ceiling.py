"""The history ceiling: a Bayesian estimator that is told the simulator's form, fitted on the history.

It sees what the pipeline saw (the landing files up to D: persons, contacts, attempts) plus the
generator's equations and priors (``simulated_world.GENERATOR`` and the world's ``WorldSpec``):
for each person it draws ``K`` samples of every latent term from the prior (responsiveness,
channel affinities, hour-habit group with peak/width/amplitude, weekday habit, each address's
quality and status), weighs each sample by the likelihood of the person's attempt outcomes
(reach, the channel's miss mix, ``invalid`` on dead addresses, ``wrong_party``/voicemail/no
answer on reassigned ones, same-day and yesterday fatigue) and returns the posterior mean
p(reach) of each published address at each allowed hour of D+1 (self-normalised importance
sampling). The order of a file's rows is not read (the contract gives it no meaning): where the
generator ties an address's quality and staleness to its place in the person's first book, each
sample draws that place (``positions_drawn``). An address stale on D+1 may have died or been
reassigned during the history (at the world's rates, on a uniform day), so its earlier reaches
are explained. Simplifications (so the figure is a lower bound of the true ceiling): the
conversion split of a reach is not used, deactivations are not modelled, addresses seen only in
attempts get a non-oldest prior, and the posterior is a finite importance sample (``K`` draws
per person).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy import sparse

from contactrank.features.context import bucket_index
from contactrank.features.schema import CHANNELS
from contactrank.features.simulated_world import (
    AGE_BANDS,
    GENERATOR,
    REGIONS,
    SEGMENTS,
    WORLDS,
    WorldSpec,
)

K = 3000  # prior samples per person
CHUNK = 120  # persons per block (memory: attempts x K floats)
_VALID, _DEAD, _REASSIGNED = 0, 1, 2
_OFFSETS = {"America/Sao_Paulo": -3, "America/Manaus": -4, "America/Rio_Branco": -5, "America/Noronha": -2}
_REACH = {"right_party", "converted", "opt_out"}
# What the ceiling is told of each attempt (``ceiling_matrix``'s ``told``): everything the landing
# files give; its hour only as the pipeline's hour bucket (redrawn uniformly inside it), which is
# what the habit counts keep; or that, without the address's earlier tries that day and the day
# before. The two lesser ceilings say where its edge over a bucket-count learner lies.
TOLD = ("attempts", "buckets", "buckets_no_fatigue")


def _normalise(contact: pd.Series) -> pd.Series:
    """Provider spellings back to the simulator's ids: (DD) 9XXXX-XXXX -> +55DD9XXXXXXXX, e-mails lower."""
    c = contact.str.strip()
    nat = c.str.match(r"^\(\d\d\) ")
    digits = c[nat].str.replace(r"\D", "", regex=True)
    c = c.where(~nat, "+55" + digits.reindex(c.index).fillna(""))
    return c.where(~c.str.contains("@"), c.str.lower())


def _read(landing: Path, kind: str, d: date) -> pd.DataFrame:
    """Every landing file of ``kind`` up to D (Parquet, or CSV as the command line writes them)."""
    frames = []
    for p in sorted((landing / kind).glob("date=*/part-0.*")):
        if p.parent.name[5:] > d.isoformat():
            continue
        df = pq.read_table(p).to_pandas() if p.suffix == ".parquet" else pd.read_csv(p, dtype=str)
        frames.append(df.assign(_date=p.parent.name[5:]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _history(
    landing: Path, d: date, told: str = "attempts"
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Persons (attributes, offset), addresses (channel, rank in the first book, enrichment) and
    attempts (person, address, local hour, weekday, fatigue, outcome) up to D, as ``told`` (``TOLD``)."""
    if told not in TOLD:
        raise ValueError(f"told must be one of {TOLD}: {told!r}")
    persons = _read(landing, "persons", d).drop_duplicates("person_id", keep="last").set_index("person_id")
    persons["offset"] = persons["timezone"].map(_OFFSETS) if "timezone" in persons else -3
    contacts = _contacts(landing, d)
    first_day = contacts["_date"].min()
    book = contacts[contacts["_date"] == first_day].copy()
    book["rank"] = book.groupby("person_id").cumcount()
    book = book.drop_duplicates(["person_id", "contact_id"])
    enr = contacts[contacts["source"] == "enrichment"].drop_duplicates(["person_id", "contact_id"])
    enr = enr.assign(created=(pd.to_datetime(enr["_date"]) - pd.Timestamp(first_day)).dt.days)
    att = _read(landing, "attempts", d)
    att["contact_id"] = _normalise(att["contact_id"])
    off = persons["offset"].reindex(att["person_id"]).fillna(-3).to_numpy()
    local = pd.to_datetime(att["attempted_at"], utc=True).dt.tz_localize(None) + pd.to_timedelta(
        off, unit="h"
    )
    att["hour"] = local.dt.hour
    att["dow"] = local.dt.weekday
    att["day"] = (local.dt.normalize() - pd.Timestamp(first_day)).dt.days
    att = att.sort_values(["contact_id", "attempted_at"], kind="mergesort")
    att["same_day"] = att.groupby(["contact_id", "day"]).cumcount()
    days = att.groupby(["contact_id", "day"]).size().reset_index()[["contact_id", "day"]]
    days["day"] += 1
    att = att.merge(days.assign(tried_yesterday=True), on=["contact_id", "day"], how="left")
    att["tried_yesterday"] = att["tried_yesterday"].fillna(False).astype(bool)
    if told != "attempts":
        att["hour"] = hour_in_bucket(att["hour"].to_numpy(), np.random.default_rng(4321))
    if told == "buckets_no_fatigue":
        att["same_day"], att["tried_yesterday"] = 0, False
    return persons, book, enr, att


def hour_in_bucket(hours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each local hour redrawn uniformly among the hours of its bucket (``features.context.bucket_index``)."""
    of_hour = bucket_index(np.arange(24, dtype=np.float64))
    bucket = bucket_index(hours.astype(np.float64))
    out = np.asarray(hours).copy()
    for b in np.unique(bucket):
        members, in_bucket = np.flatnonzero(of_hour == b), bucket == b
        out[in_bucket] = members[rng.integers(0, len(members), in_bucket.sum())]
    return out


def _contacts(landing: Path, d: date) -> pd.DataFrame:
    """Every contacts row delivered up to D, ``contact_id`` in the simulator's spelling."""
    contacts = _read(landing, "contacts", d)
    contacts["contact_id"] = _normalise(contacts["contact_id"])
    return contacts


def contact_book(landing: Path, d: date) -> pd.DataFrame:
    """Every address delivered up to D (person_id, contact_id in the simulator's spelling, channel)."""
    rows = _contacts(landing, d)[["person_id", "contact_id", "channel"]]
    return rows.drop_duplicates(["person_id", "contact_id"], keep="last").reset_index(drop=True)


@dataclass(frozen=True)
class HabitTypes:
    """The hour-habit types a ceiling's prior draws from: per type its centre (local hour) and the
    range of its amplitude, and per age band (``AGE_BANDS``) the types' shares, shape (4, types)."""

    centres: np.ndarray
    amp_low: np.ndarray
    amp_high: np.ndarray
    shares: np.ndarray


def world_spec(world: str | None) -> WorldSpec:
    """The simulator preset a landing was made with (None: the project's own world)."""
    return WORLDS.get(world or "default", WorldSpec())


def told_habits(spec: WorldSpec) -> HabitTypes:
    """The world's own habit types, as the simulator draws them."""
    if spec.hour_groups is None:
        g, types = GENERATOR, GENERATOR["habit_centres"].size
        low, high = g["habit_amp"]
        return HabitTypes(g["habit_centres"], np.full(types, low), np.full(types, high), g["habit_shares"])
    w = np.array([x[0] for x in spec.hour_groups], float)
    return HabitTypes(
        np.array([x[1] for x in spec.hour_groups], float),
        np.array([x[2] for x in spec.hour_groups], float),
        np.array([x[3] for x in spec.hour_groups], float),
        np.tile(w / w.sum(), (len(AGE_BANDS), 1)),
    )


def _prior_persons(
    rng, habits: HabitTypes, age: np.ndarray, region: np.ndarray, segment: np.ndarray, zbal: np.ndarray
) -> dict[str, np.ndarray]:
    """K samples of each person's latent terms, shape (persons, K[, ...]); ``type`` is the habit type."""
    n = age.size
    g = GENERATOR
    resp = (
        rng.normal(0.0, 0.8, (n, K))
        + (g["age_resp"][age] + g["region_resp"][region] + g["segment_resp"][segment] + 0.15 * zbal)[:, None]
    )
    aff = rng.normal(0.0, 0.7, (n, K, 4)) + g["channel_base"]
    aff[:, :, 3] += np.where(age == 0, 0.5, np.where(age == 3, -0.5, 0.0))[:, None]
    aff[:, :, 0] += np.where(age == 3, 0.4, 0.0)[:, None]
    p_type = habits.shares[age]
    centres, lo, hi = habits.centres, habits.amp_low, habits.amp_high
    u = rng.random((n, K))
    cum = np.cumsum(p_type, axis=1)
    ht = np.minimum((u[:, :, None] > cum[:, None, :]).sum(axis=2), centres.size - 1)
    weekend = np.array([0, 0, 0, 0, 0, 1, 1], float)
    wtype = rng.choice([-0.5, 0.0, 0.5], (n, K), p=[0.3, 0.4, 0.3])
    return {
        "resp": resp,
        "aff": aff,
        "type": ht,
        "peak": centres[ht] + rng.normal(0.0, 1.0, (n, K)),
        "width": rng.uniform(1.5, 3.0, (n, K)),
        "amp": lo[ht] + rng.random((n, K)) * (hi[ht] - lo[ht]),
        "dow": wtype[:, :, None] * (weekend - 0.3) + rng.normal(0.0, 0.15, (n, K, 7)),
    }


def positions_drawn(
    rng, person: np.ndarray, rank: np.ndarray, in_book: np.ndarray, book_size: pd.Series
) -> np.ndarray:
    """(addresses, K) each sample's position of every first-book address in its person's first
    book (``book_size`` addresses per person): drawn without replacement, uniformly, per person
    and sample; the other addresses keep ``rank``.

    The contract gives a file's row order no meaning, so an estimator of what the history says
    may not read the generator's age order from it: each position is equally likely."""
    out = np.repeat(rank[:, None], K, axis=1)
    idx = np.flatnonzero(in_book)
    if not idx.size:
        return out
    owners, owner = np.unique(person[idx], return_inverse=True)
    # the positions of the book's other addresses (not published, never tried) are drawn too
    missing = np.maximum(book_size.reindex(owners).fillna(0).to_numpy().astype(int) - np.bincount(owner), 0)
    everyone = np.r_[owner, np.repeat(np.arange(owners.size), missing)]
    keys = everyone[:, None] + rng.random((everyone.size, K))  # by person, shuffled inside each
    start = np.r_[0, np.cumsum(np.bincount(everyone))[:-1]]
    out[idx] = (np.argsort(np.argsort(keys, axis=0), axis=0) - start[everyone][:, None])[: idx.size]
    return out


def _prior_addresses(rng, spec: WorldSpec, rank, enrich, channel, created, horizon: int):
    """K samples of each address's quality (with the come-back boost), status on D+1 and the day
    its status changed (live addresses die or are reassigned at the world's rates between their
    first day and D+1; -1e9 for an address stale from the start), each (addresses, K).
    ``rank``: the position in the person's first book, (addresses,) or one per sample (addresses, K)."""
    m = rank.shape[0]
    rank = rank if rank.ndim == 2 else np.repeat(rank[:, None], K, axis=1)
    q = np.where(
        enrich[:, None],
        rng.normal(0.2, 0.5, (m, K)) + GENERATOR["comeback_boost"],
        rng.normal(0.0, 0.6, (m, K)) - 0.1 * rank,
    )
    k = K
    old = rank == 0
    if spec.initial_stale is None:
        pv, pd_ = np.where(old, 0.62, 0.8), np.where(old, 0.85, 0.92)
    else:
        pv = np.full((m, k), 1.0 - sum(spec.initial_stale))
        pd_ = np.full((m, k), 1.0 - spec.initial_stale[1])
    pv, pd_ = np.where(enrich[:, None], 0.95, pv), np.where(enrich[:, None], 1.0, pd_)
    u = rng.random((m, k))
    st = np.where(u < pv, _VALID, np.where(u < pd_, _DEAD, _REASSIGNED))
    email = (channel == 2)[:, None]
    st[email & (st == _REASSIGNED)] = _DEAD  # e-mails bounce, they are not reassigned
    hazard = np.where(channel == 2, spec.death_rate / 3, spec.death_rate + spec.reassign_rate)
    days = np.maximum(horizon - created, 1)
    churned = (st == _VALID) & (rng.random((m, k)) < (1 - (1 - hazard) ** days)[:, None])
    reassign = ~email & (rng.random((m, k)) < spec.reassign_rate / (spec.death_rate + spec.reassign_rate))
    st = np.where(churned, np.where(reassign, _REASSIGNED, _DEAD), st)
    tau = np.where(churned, created[:, None] + rng.random((m, k)) * days[:, None], -1e9)
    return q, st, tau


def _logit(lat, pi, q, ai, ch, hour, dow):
    """The generator's reach logit for (item i: person index pi, address ai) x K samples."""
    ht = np.exp(-((hour[:, None] - lat["peak"][pi]) ** 2) / (2 * lat["width"][pi] ** 2)) - 0.45
    aff = np.take_along_axis(lat["aff"][pi], ch[:, None, None], axis=2)[:, :, 0]
    dw = np.take_along_axis(lat["dow"][pi], dow[:, None, None], axis=2)[:, :, 0]
    return (
        GENERATOR["base"]
        + lat["resp"][pi]
        + aff
        + q[ai]
        + GENERATOR["hour_weight"][ch][:, None] * lat["amp"][pi] * ht
        + dw
    )


def _outcome_lik(outcome: np.ndarray, ch: np.ndarray, p: np.ndarray, st: np.ndarray) -> np.ndarray:
    """P(outcome | p, status) for each attempt x sample (the simulator's outcome draw)."""
    voice = (ch == 0)[:, None]
    o = outcome[:, None]
    reached = np.isin(outcome, list(_REACH))[:, None]
    miss = np.where(
        voice,
        np.select(
            [o == "no_answer", o == "voicemail", o == "busy", o == "rejected"], [0.5, 0.25, 0.1, 0.15], 0.0
        ),
        np.select([o == "no_answer", o == "rejected"], [0.9, 0.1], 0.0),
    )
    valid = np.where(reached, p, (1 - p) * miss)
    p_inv = np.where(ch == 2, 0.95, 0.85)[:, None]
    dead = np.where(o == "invalid", p_inv, np.where(o == "no_answer", 1 - p_inv, 0.0))
    p_wp = np.where(voice, 0.35, 0.2)
    reas = np.select(
        [o == "wrong_party", (o == "voicemail") & voice, (o == "no_answer") & voice, o == "no_answer"],
        [p_wp, (1 - p_wp) * 0.4, (1 - p_wp) * 0.6, 1 - p_wp],
        0.0,
    )
    return np.where(st == _VALID, valid, np.where(st == _DEAD, dead, reas))


@dataclass
class Block:
    """One block of persons' posterior: the latent samples, their normalised weights (persons, K),
    the log of each person's history's likelihood under the prior (its mean over the samples),
    the persons' age bands, and for the block's published rows (``rows_at``) their person, address
    and channel indices into the samples."""

    latent: dict[str, np.ndarray]
    weights: np.ndarray
    log_evidence: np.ndarray
    age: np.ndarray
    quality: np.ndarray
    status: np.ndarray
    rows_at: np.ndarray
    row_person: np.ndarray
    row_address: np.ndarray
    row_channel: np.ndarray


def posterior_blocks(
    landing: Path,
    d: date,
    rows: pd.DataFrame,
    world: str | None,
    file_order: bool = False,
    told: str = "attempts",
    habits: HabitTypes | None = None,
) -> Iterator[Block]:
    """The importance-sampled posterior of every person of ``rows``, ``CHUNK`` persons at a time.

    ``habits``: the habit types of the prior (None: the world's own, ``told_habits``)."""
    spec = world_spec(world)
    habits = habits or told_habits(spec)
    persons, book, enr, att = _history(landing, d, told)
    rng = np.random.default_rng(12345)
    chan = {c: i for i, c in enumerate(CHANNELS)}
    pids = rows["person_id"].unique()
    rank_of = book.set_index(["person_id", "contact_id"])["rank"]
    book_size = book.groupby("person_id").size()
    enr_day = enr.set_index(["person_id", "contact_id"])["created"]
    horizon = (d + timedelta(days=1) - date.fromisoformat(book["_date"].min())).days
    for lo in range(0, pids.size, CHUNK):
        block = pids[lo : lo + CHUNK]
        pindex = pd.Index(block)
        pr = persons.reindex(block)
        age = pd.Index(AGE_BANDS).get_indexer(pr["age_band"])
        lat = _prior_persons(
            rng,
            habits,
            age,
            pd.Index(REGIONS).get_indexer(pr["region"]),
            pd.Index(SEGMENTS).get_indexer(pr["segment"]),
            ((np.log(pr["balance"].astype(float)) - 7.0) / 1.2).to_numpy(),
        )
        rsel = rows.index[rows["person_id"].isin(block)]
        a = att[att["person_id"].isin(block)]
        addr = pd.concat(
            [
                rows.loc[rsel, ["person_id", "contact_id", "channel"]],
                a[["person_id", "contact_id", "channel"]],
            ]
        ).drop_duplicates(["person_id", "contact_id"])
        akeys = pd.MultiIndex.from_frame(addr[["person_id", "contact_id"]])
        known = rank_of.reindex(akeys)
        rank = known.fillna(1).to_numpy().astype(int)
        if not file_order:
            in_book = known.notna().to_numpy()
            rank = positions_drawn(rng, addr["person_id"].to_numpy(), rank, in_book, book_size)
        created = enr_day.reindex(akeys).to_numpy()
        enrich = np.isfinite(created)
        created = np.nan_to_num(created, nan=0.0)
        ach = addr["channel"].map(chan).to_numpy()
        q, st, tau = _prior_addresses(rng, spec, rank, enrich, ach, created, horizon)
        loglik = np.zeros((block.size, K))
        if len(a):
            ai = akeys.get_indexer(pd.MultiIndex.from_frame(a[["person_id", "contact_id"]]))
            pi = pindex.get_indexer(a["person_id"])
            ch = a["channel"].map(chan).to_numpy()
            fat = -0.45 * a["same_day"].to_numpy() - 0.2 * a["tried_yesterday"].to_numpy()
            p = 1 / (
                1
                + np.exp(
                    -(
                        _logit(lat, pi, q, ai, ch, a["hour"].to_numpy().astype(float), a["dow"].to_numpy())
                        + fat[:, None]
                    )
                )
            )
            # before its change day an address that is stale now was still live
            then = np.where(a["day"].to_numpy()[:, None] < tau[ai], _VALID, st[ai])
            lik = _outcome_lik(a["outcome"].to_numpy(), ch, p, then)
            ll = np.log(np.maximum(lik, 1e-300))
            m = sparse.csr_matrix((np.ones(len(a)), (pi, np.arange(len(a)))), shape=(block.size, len(a)))
            loglik = m @ ll
        top = loglik.max(axis=1, keepdims=True)
        w = np.exp(loglik - top)
        evidence = top[:, 0] + np.log(w.mean(axis=1))
        w /= w.sum(axis=1, keepdims=True)
        ri = akeys.get_indexer(pd.MultiIndex.from_frame(rows.loc[rsel, ["person_id", "contact_id"]]))
        rpi = pindex.get_indexer(rows.loc[rsel, "person_id"])
        yield Block(lat, w, evidence, age, q, st, rsel.to_numpy(), rpi, ri, ach[ri])


def ceiling_matrix(
    landing: Path,
    d: date,
    rows: pd.DataFrame,
    hours: np.ndarray,
    world: str | None,
    file_order: bool = False,
    told: str = "attempts",
    habits: HabitTypes | None = None,
) -> np.ndarray:
    """Posterior mean p(reach) of each row (person_id, contact_id, channel) at each hour of D+1.

    ``file_order``: read each address's age rank from its row's position in the first contacts
    file, as the simulator writes it (a fact the contract does not give; ``positions_drawn``).
    ``told``: what it reads of each attempt (``TOLD``); ``habits``: the habit types of its prior
    (None: the world's own; ``judge_ceiling_learned`` fits them on the history instead)."""
    dow_t = (d + timedelta(days=1)).weekday()
    out = np.zeros((len(rows), hours.size))
    for b in posterior_blocks(landing, d, rows, world, file_order, told, habits):
        n = b.row_address.size
        live = b.status[b.row_address] == _VALID
        for j, h in enumerate(hours):
            pj = 1 / (
                1
                + np.exp(
                    -_logit(
                        b.latent,
                        b.row_person,
                        b.quality,
                        b.row_address,
                        b.row_channel,
                        np.full(n, float(h)),
                        np.full(n, dow_t),
                    )
                )
            )
            out[b.rows_at, j] = (b.weights[b.row_person] * pj * live).sum(axis=1)
    return out
