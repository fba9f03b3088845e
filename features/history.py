"""What the lake holds up to a business date D, as file lists and as SQL relations.

``partition_files`` is the only way the feature build lists history. Cutting every list at D is
what keeps data dated after D out of the features of D (tests/data/test_leakage.py). Missing
partitions read as the empty relations named here (registered by ``build.register_empty_relations``),
so every query keeps its columns whatever the lake holds.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from contactrank.dates import date_range
from contactrank.features import sql
from contactrank.features.lake import DATA_FILE, partition_dates, partition_dir
from contactrank.settings import Settings

# Lake tables written by the feature build (docs/features.md).
DAILY_AGG = "daily_agg"
STATE = "feature_state"
FEATURES = "features"
TRAINING = "training"
POP_FILE = "population.parquet"  # beside daily_agg's part-0: counts per (campaign, channel) of the day
PERSONS_FILE = "persons.parquet"  # beside feature_state's part-0: the person attributes of the day

# Zero-row temp views standing in for a partition that does not exist.
EMPTY_ATTEMPTS = "empty_attempts"
EMPTY_CONTACTS_STATE = "empty_contacts_state"
EMPTY_DAILY_AGG = "empty_daily_agg"
EMPTY_POPULATION = "empty_population"

POPULATION_DAYS = 30  # days of population counts the recent reach/conversion rates look at
# Up to this many days, ``partition_files`` looks at each day's file rather than listing the kind
# (every listing checks every partition of the history).
NEAR_DAYS = 100


def partition_files(
    settings: Settings, kind: str, upto: date, since: date | None = None, name: str = DATA_FILE
) -> list[Path]:
    """Files ``<kind>/date=X/<name>`` with ``since <= X <= upto``, oldest first."""
    out = []
    if since is not None and isinstance(settings.lake, Path) and (upto - since).days < NEAR_DAYS:
        # a few days' files: a look at each of them, not a listing of the whole history
        for x in date_range(since, upto):
            path = partition_dir(settings, kind, x) / name
            if path.is_file() and (name == DATA_FILE or (path.parent / DATA_FILE).is_file()):
                out.append(path)
        return out
    for x in partition_dates(settings, kind):
        if x <= upto and (since is None or x >= since):
            path = partition_dir(settings, kind, x) / name
            if path.is_file():
                out.append(path)
    return out


def read_file(path: Path) -> str:
    """A FROM-able relation over one lake file."""
    return sql.read_parquet(path, hive_partitioning="false")  # lake paths look like hive keys: never guess


def read_files(files: list[Path], empty: str, **options: str) -> str:
    """A FROM-able relation over ``files``, or the relation ``empty`` when there are none."""
    if not files:
        return empty
    options.setdefault("hive_partitioning", "false")
    return sql.read_parquet(files, **options)


def attempts_file(settings: Settings, d: date) -> Path | None:
    """The raw attempts of d, or None when nothing was delivered for d."""
    path = partition_dir(settings, "attempts", d) / DATA_FILE
    return path if path.is_file() else None


def contacts_state_files(settings: Settings, d: date) -> list[Path]:
    """The latest contacts_state file <= d, as a list of at most one (for the chunk sizing)."""
    own = partition_dir(settings, "contacts_state", d) / DATA_FILE
    if isinstance(own, Path) and own.is_file():  # ingest writes one every day: no listing needed
        return [own]
    for x in reversed(partition_dates(settings, "contacts_state")):  # newest first: one path, not all
        path = partition_dir(settings, "contacts_state", x) / DATA_FILE
        if x <= d and path.is_file():
            return [path]
    return []


def contacts_state(settings: Settings, d: date) -> str:
    """The candidates known by the end of d: the latest contacts_state partition <= d."""
    files = contacts_state_files(settings, d)
    return read_file(files[0]) if files else EMPTY_CONTACTS_STATE


def daily_aggs(settings: Settings, upto: date, since: date | None = None) -> str:
    """Every daily aggregate of [since, upto]."""
    return read_files(partition_files(settings, DAILY_AGG, upto, since=since), EMPTY_DAILY_AGG)


def daily_agg_of(settings: Settings, d: date) -> str:
    """The daily aggregates of d alone."""
    path = partition_dir(settings, DAILY_AGG, d) / DATA_FILE
    return read_file(path) if path.is_file() else EMPTY_DAILY_AGG


def recent_population(settings: Settings, x: date) -> str:
    """The population counts of the POPULATION_DAYS days up to x, with every column of
    ``EMPTY_POPULATION``: a file written before a column existed has it NULL."""
    since = x - timedelta(days=POPULATION_DAYS - 1)
    files = partition_files(settings, DAILY_AGG, x, since=since, name=POP_FILE)
    if not files:
        return EMPTY_POPULATION
    written = read_files(files, EMPTY_POPULATION, union_by_name="true")
    return f"(SELECT * FROM {EMPTY_POPULATION} UNION ALL BY NAME SELECT * FROM {written})"


def state_files(state_dir: Path) -> tuple[str, str]:
    """The feature state and the person attributes of ``state_dir`` ("" when it has no attributes)."""
    persons = state_dir / PERSONS_FILE
    return read_file(state_dir / DATA_FILE), (read_file(persons) if persons.is_file() else "")
