"""A small, seeded lake history for the feature tests (written with features.lake.write_partition)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from contactrank.features.lake import write_partition
from contactrank.features.schema import ATTEMPTS, CHANNELS, CONTACTS_STATE, OUTCOMES
from contactrank.settings import Settings

START = date(2025, 1, 1)


def contacts(n_persons: int = 24, seed: int = 0, last_day: int = 420) -> pd.DataFrame:
    """Every address of the history with its first_seen day offset; some addresses appear late."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_persons):
        for j in range(int(rng.integers(1, 4))):
            late = rng.random() < 0.25
            first = int(rng.integers(0, last_day)) if late else 0
            rows.append(
                {
                    "person_id": f"p{p:03d}",
                    "contact_id": f"+55119{p:03d}{j:04d}",
                    "channel": str(rng.choice(CHANNELS)),
                    "source": str(rng.choice(["customer", "bureau", "enrichment", None])),
                    "first_day": first,
                    "active": bool(rng.random() > 0.1),
                    "consent": bool(rng.random() > 0.05),
                }
            )
    return pd.DataFrame(rows)


def write_contacts_state(settings: Settings, book: pd.DataFrame, day: int) -> None:
    d = START + timedelta(days=day)
    visible = book["visible_from"] if "visible_from" in book else book["first_day"]
    cs = book[visible <= day].copy()
    cs["first_seen"] = [START + timedelta(days=int(x)) for x in cs.first_day]
    cs["updated_at"] = datetime(2025, 1, 1, tzinfo=UTC)
    cs["source"] = cs["source"].where(cs["source"] != "None", None)
    write_partition(settings, "contacts_state", d, _typed(cs, CONTACTS_STATE))


def attempts_for(book: pd.DataFrame, day: int, n: int, seed: int) -> pd.DataFrame:
    """``n`` random attempts on day ``day`` on addresses already seen by then."""
    rng = np.random.default_rng(seed * 100_003 + day)
    live = book[book.first_day <= day].reset_index(drop=True)
    pick = live.iloc[rng.integers(0, len(live), n)].reset_index(drop=True)
    hours = rng.integers(0, 24, n)
    minutes = rng.integers(0, 60, n)
    d = START + timedelta(days=day)
    weights = np.array([30, 6, 8, 5, 4, 5, 25, 7, 2], dtype=float)
    return pd.DataFrame(
        {
            "attempt_id": [f"a{day:04d}-{i:04d}" for i in range(n)],
            "person_id": pick.person_id,
            "contact_id": pick.contact_id,
            "channel": pick.channel,
            "attempted_at": [
                datetime(d.year, d.month, d.day, int(h), int(m), tzinfo=UTC)
                for h, m in zip(hours, minutes, strict=True)
            ],
            "local_hour": hours.astype("int8"),
            "outcome": rng.choice(OUTCOMES, n, p=weights / weights.sum()),
            "campaign_id": rng.choice(["camp-a", "camp-b", None], n),
            "duration_s": rng.random(n) * 100,
        }
    )


def write_attempts(settings: Settings, day: int, df: pd.DataFrame) -> None:
    write_partition(settings, "attempts", START + timedelta(days=day), _typed(df, ATTEMPTS))


def write_persons(settings: Settings, day: int, df: pd.DataFrame) -> None:
    write_partition(settings, "persons", START + timedelta(days=day), df)


def _typed(df: pd.DataFrame, schema) -> object:
    import pyarrow as pa

    return pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)


def attempt(day: int, i: int, person: str, contact: str, channel: str, outcome: str, hour: int) -> dict:
    d = START + timedelta(days=day)
    return {
        "attempt_id": f"x{day:04d}-{i:03d}",
        "person_id": person,
        "contact_id": contact,
        "channel": channel,
        "attempted_at": datetime(d.year, d.month, d.day, hour, i % 60, tzinfo=UTC),
        "local_hour": hour,
        "outcome": outcome,
        "campaign_id": "camp-x",
        "duration_s": 1.0,
    }


def history(
    settings: Settings,
    attempt_days: list[int],
    cs_days: list[int],
    n: int = 25,
    seed: int = 0,
    n_persons: int = 24,
    extra_book: list[dict] | None = None,
    extra_attempts: list[dict] | None = None,
) -> pd.DataFrame:
    """Write attempts on ``attempt_days``, contacts_state on ``cs_days`` and a few person upserts.

    ``extra_book`` adds addresses (dicts like the rows of ``contacts``, with an optional
    ``visible_from`` day); ``extra_attempts`` adds attempts built with ``attempt`` to their day.
    """
    book = contacts(n_persons=n_persons, seed=seed)
    if extra_book:
        book = pd.concat(
            [book.assign(visible_from=book.first_day), pd.DataFrame(extra_book)], ignore_index=True
        )
        book["visible_from"] = book["visible_from"].fillna(book["first_day"]).astype(int)
    extra = pd.DataFrame(extra_attempts or [], columns=ATTEMPTS.names)
    days = sorted(
        set(attempt_days) | {int((pd.Timestamp(t).date() - START).days) for t in extra.attempted_at}
    )
    for day in days:
        random_part = (
            attempts_for(book[book.person_id.str.startswith("p")], day, n, seed)
            if day in attempt_days
            else None
        )
        mine = extra[[(pd.Timestamp(t).date() - START).days == day for t in extra.attempted_at]]
        df = pd.concat([x for x in (random_part, mine) if x is not None and len(x)], ignore_index=True)
        df["local_hour"] = df["local_hour"].astype("int8")
        write_attempts(settings, day, df)
    for day in cs_days:
        write_contacts_state(settings, book, day)
    persons = sorted(book.person_id.unique())
    write_persons(
        settings,
        0,
        pd.DataFrame(
            {
                "person_id": persons,
                "updated_at": [datetime(2025, 1, 1, tzinfo=UTC)] * len(persons),
                "region": [["north", "south", "east"][i % 3] for i in range(len(persons))],
                "balance": [float(i) * 10.5 for i in range(len(persons))],
                "vip": [i % 4 == 0 for i in range(len(persons))],
            }
        ),
    )
    later = [x for x in attempt_days if x > 0]
    if later:
        write_persons(
            settings,
            later[len(later) // 2],
            pd.DataFrame(
                {
                    "person_id": persons[:5],
                    "updated_at": [datetime(2025, 6, 1, tzinfo=UTC)] * 5,
                    "region": ["west", None, "west", "north", "west"],
                    "segment": ["gold", "silver", "gold", None, "bronze"],
                }
            ),
        )
    return book
