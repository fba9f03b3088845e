"""One frozen, typed settings object: defaults < contactrank.toml < CONTACTRANK_* env < overrides.

The TOML file may group keys in tables (``[gate]``, ``[scoring]``...) for readability; tables are
flattened, so ``[gate] auc_margin = 0.01`` and a top-level ``auc_margin = 0.01`` mean the same.
Environment variables are the upper-cased field names: ``CONTACTRANK_HOME``,
``CONTACTRANK_EXPLORE_SHARE``, ``CONTACTRANK_LABEL``...
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from contactrank.storage import Location, location

ENV_PREFIX = "CONTACTRANK_"


@dataclass(frozen=True)
class Settings:
    # --- where things live -------------------------------------------------------------
    home: Path = Path(".contactrank")
    landing_dir: Path | None = None  # default: <home>/landing
    # the lake and the exports: a local folder or s3://bucket/prefix (contactrank.storage)
    lake_uri: str | None = None  # default: <home>/lake
    exports_uri: str | None = None  # default: <home>/exports
    mlflow_tracking_uri: str | None = None  # default: sqlite:///<home>/mlflow.db (MLFLOW_TRACKING_URI wins)
    model_name: str = "contactrank"
    experiment_name: str = "contactrank"

    # --- ingest ---------------------------------------------------------------------------
    quarantine_threshold: float = 0.05  # fail the step when more than this share of rows is quarantined
    time_tolerance_hours: float = 6.0  # attempted_at may lie this far outside its business date
    local_timezone: str = "America/Sao_Paulo"  # for timestamps given without an offset: local hour
    default_country_code: str = "55"  # E.164 country code for national phone numbers
    max_string_length: int = 512  # longer values are quarantined

    # --- features -------------------------------------------------------------------------
    feature_engine: Literal["duckdb"] = "duckdb"
    duckdb_memory_limit: str = "4GB"
    duckdb_threads: int = 2
    prior_strength: float = 5.0  # pseudo-attempts of the empirical-Bayes prior
    # features, score and publish run once per shard of persons (contactrank.shards); 1: unsharded
    shards: int = 1
    shard_workers: int = 1  # processes that run the shards of a step side by side (CLI: --workers)

    # --- model ----------------------------------------------------------------------------
    label: Literal["reach", "conversion"] = "reach"
    objective: Literal["binary", "lambdarank"] = "binary"
    train_window_days: int = 90
    # Training rows kept at most (whole persons sampled by a hash of person_id, training days only):
    # bounds memory and time when the window holds more (docs/benchmarks.md: the daily-load run).
    train_max_rows: int = 3_000_000
    valid_days: int = 3
    min_train_days: int = 7  # fewer labelled days than this: no training yet
    retrain_every_days: int = 1
    seed: int = 42
    num_threads: int = 2
    num_boost_round: int = 500
    early_stopping_rounds: int = 30
    # thin data: the training days grow back past train_window_days until they hold this many
    # labelled rows (a plentiful window is never extended)
    train_min_rows: int = 5_000
    # recency weights: a training row's weight halves every this many days of age (0: all rows
    # weigh the same), so a drifting base rate is followed without dropping older history
    train_halflife_days: float = 0.0
    # the validation days grow back past valid_days until they hold this many rows of each class
    # (early stopping and calibration on a handful of positives overfit the noise)
    valid_min_positives: int = 50
    # "first_tries": a second calibration of the score a file publishes (hour-averaged probability
    # x the habit's lift), fitted on the validation days' first tries scored as a file scores
    # them (ml/file_calibration.py says why); "none": the product as it comes
    file_calibration: Literal["first_tries", "none"] = "first_tries"
    # the PNG diagnostics of every training (importance, SHAP, calibration, gains, confusion):
    # the daily run keeps them; a backfill or benchmark replaying hundreds of days can switch them
    # off (CONTACTRANK_TRAIN_PLOTS=0), since drawing them costs more than fitting a small model
    train_plots: bool = True
    # "dask": fit with LightGBM's distributed mode on a Dask cluster whose workers read the training
    # days themselves (the `dask` extra; docs/scale.md, "Training past one machine"); binary only
    train_engine: Literal["local", "dask"] = "local"
    dask_scheduler: str = ""  # address of a running scheduler (tcp://host:8786); empty: a LocalCluster
    dask_workers: int = 2  # workers of that LocalCluster, sharing num_threads (at least one thread each)

    # --- promotion gate --------------------------------------------------------------------
    gate_auc_margin: float = 0.005  # challenger AUC may be at most this much below the champion's
    gate_slice_drop: float = 0.02  # no channel slice may lose more AUC than this
    gate_ece_cap: float = 0.05
    gate_auc_floor: float = 0.55
    # the gate's evidence: the newest labelled days, held out of training, grown back until they
    # hold gate_min_rows rows and gate_min_positives of each class, at most gate_window_days days;
    # less evidence holds the champion ("not enough evidence"), never a failure of the challenger
    gate_window_days: int = 14
    gate_min_rows: int = 300
    gate_min_positives: int = 30
    gate_confidence: float = 0.9  # two-sided level of the DeLong interval of the AUC difference
    gate_ece_margin: float = 0.02  # challenger ECE may exceed the champion's (same rows) by this much
    max_champion_age_days: int = 35  # an older champion gives way to any challenger passing the floors
    drift_min_rows: int = 500  # PSI only with at least this many rows on each side
    drift_psi_threshold: float = 0.25
    drift_label_rate_ratio: float = 2.0
    drift_min_history_days: int = 21  # a younger history grows every day: the guard waits until then

    # --- scoring and publishing -------------------------------------------------------------
    hours_start: int = 8  # first allowed local hour (inclusive)
    hours_end: int = 21  # last allowed local hour (inclusive)
    channel_hours: dict[str, list[int]] = field(default_factory=dict)  # per-channel [start, end] override
    invalid_policy: Literal["drop", "last"] = "drop"
    # "drop": an address answered by someone else since its last reach (a reassigned number) is
    # not published; "keep": the model ranks it like any other
    wrong_party_policy: Literal["drop", "keep"] = "drop"
    cap_person_7d: int = 7
    cap_address_day: int = 3  # an address attempted this often on D rests on D+1
    # in the closed loop of the judged worlds a 2 % share realised more of the achievable lift
    # than 5 % on all four and about what none did, while keeping logged propensities for
    # evaluate-policy (docs/benchmarks.md)
    explore_share: float = 0.02
    # who picks best_hour: "shape" (the person's habit shape pooled with the habit profile, the
    # profile alone where the shape knows nothing), "curve" (the person's hour curve, read from
    # every try under a response curve, features/hour_curves.py; "shape" for a person without
    # one; the settings below then shape only the fallback and the score), "profile" (the habit
    # profile alone) or "model" (the highest model output alone); ml/hours.py says why. "curve"
    # chose better hours on every judged world, but the demo with it runs at its ten minutes
    # (docs/benchmarks.md, "The hour curve at a fifth of the cost"): an option for now
    hour_choice: Literal["shape", "curve", "profile", "model"] = "shape"
    # with "curve": the prior a day's curves are read under is the newest one fitted in the last
    # this many days (1: every day its own), stored in the lake (features/curve_priors.py says
    # why); a prior six days old chose the same hours in the judged files as a fresh one, but a
    # fresh home's rebuild then fits its own prior and differs from the chain's
    hour_curve_refit_days: int = 1
    # with "shape": the shape's weight against the profile's in the bucket choice, pooled on the
    # log scale (1: the shape alone, 0: the profile's ratios alone; ml/hours.py says why both)
    hour_shape_weight: float = 0.5
    # with "shape" or "profile": a bucket next to the best one rated at least this share of it
    # moves best_hour from the best bucket's middle to the hour next to it on that side (a value
    # above 1 never moves it; ml/hours.py says why)
    hour_lean_share: float = 0.9
    # with "shape" or "profile": each bucket's rating is divided by its repeat ratio (the reach rate
    # of all its tries over that of first tries of the day) to this power before the bucket is
    # picked (0: not at all; 1: the whole measured ratio, which also holds who was tried again and
    # cost the office-hours and time-zone worlds; docs/benchmarks.md; ml/hours.py says why)
    hour_repeat_strength: float = 0.5
    # with "shape" or "profile": a person tried this often in the chosen bucket without a reach
    # there is recommended the best-rated allowed bucket they were never tried in, if any (0: never;
    # an option: it earned about a point in the closed loop and cost capture and office hours'
    # ECE on the judge's worlds, docs/benchmarks.md)
    hour_untried_after: int = 0
    # with "shape" or "profile": the profile's rate in a bucket nobody was tried in (the
    # population's guess for everyone) is scaled by the person's ratio to the population in the
    # nearest tried bucket (ml/hours.py says why)
    hour_unseen_from_neighbours: bool = True
    # the habit profiles and shapes (and the population's hour rates) count the attempts of the
    # person's own lines only: not an address that answered invalid or as someone else in the
    # hour counts' window without reaching the person there (features/feature_state.py says why)
    hour_habit_own_lines: bool = True
    explore_max_attempts: int = 2  # an address with at most this many attempts counts as untested
    # an untested address is explored only when its score is at least this share of the greedy
    # top's (0 explores every untested address; ml/explore.py says why)
    explore_min_score_ratio: float = 0.5
    score_batch_rows: int = 500_000  # candidate x hour rows per scoring batch (memory grows with it)
    # reason codes: "path" (Saabas attribution from one pred_leaf pass, fast) or "shap" (LightGBM
    # pred_contrib, exact TreeSHAP, far slower: fine for small files, too slow for millions of rows)
    reason_method: Literal["path", "shap"] = "path"
    pseudonymise_exports: bool = False
    hmac_key_env: str = "CONTACTRANK_HMAC_KEY"
    # a --date more than this many days after the newest landing or lake data is refused (a typo
    # such as 2062 for 2026 would otherwise build empty days and publish nothing-ranked files)
    max_days_ahead_of_data: int = 3
    # a mutating command waits this long for another one holding the home's lock, then says who holds it
    lock_wait_seconds: float = 900.0

    def __post_init__(self) -> None:
        for name in ("shards", "shard_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"setting {name!r}: {getattr(self, name)!r} is invalid (must be at least 1)")
        if self.hour_curve_refit_days < 1:
            raise ValueError(
                f"setting 'hour_curve_refit_days': {self.hour_curve_refit_days!r} is invalid"
                " (must be at least 1)"
            )
        if self.hour_untried_after < 0:
            raise ValueError(
                f"setting 'hour_untried_after': {self.hour_untried_after!r} is invalid (must be at least 0)"
            )
        if not self.hour_lean_share > 0:
            raise ValueError(
                f"setting 'hour_lean_share': {self.hour_lean_share!r} is invalid (must be above 0)"
            )
        if not 0 <= self.hour_repeat_strength <= 1:
            raise ValueError(
                f"setting 'hour_repeat_strength': {self.hour_repeat_strength!r} is invalid (must lie in 0..1)"
            )
        if not 0 <= self.hour_shape_weight <= 1:
            raise ValueError(
                f"setting 'hour_shape_weight': {self.hour_shape_weight!r} is invalid (must lie in 0..1)"
            )
        if self.dask_workers < 1:
            raise ValueError(f"setting 'dask_workers': {self.dask_workers!r} is invalid (must be at least 1)")
        if self.train_engine == "dask" and self.objective != "binary":
            raise ValueError("setting 'train_engine': 'dask' fits the binary objective only")

    # --- derived paths -----------------------------------------------------------------------
    @property
    def landing(self) -> Path:
        return Path(self.landing_dir) if self.landing_dir else self.home / "landing"

    @property
    def lake(self) -> Location:
        return location(self.lake_uri) if self.lake_uri else self.home / "lake"

    @property
    def exports(self) -> Location:
        return location(self.exports_uri) if self.exports_uri else self.home / "exports"

    @property
    def tracking_uri(self) -> str:
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifact_location(self) -> str:
        return (self.home / "mlartifacts").resolve().as_uri()

    def allowed_hours(self, channel: str | None = None) -> list[int]:
        start, end = self.channel_hours.get(channel or "", [self.hours_start, self.hours_end])
        return list(range(int(start), int(end) + 1))

    def replace(self, **changes: Any) -> Settings:
        return load_settings(base=self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}

    def config_hash(self) -> str:
        """Stable hash of every setting that changes behaviour (not where things are stored)."""
        behaviour = {k: v for k, v in self.as_dict().items() if k not in _LOCATION_FIELDS}
        blob = json.dumps(behaviour, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
# where things are, how long to wait for the home, whether training draws its plots and how many
# shards share the work: not part of what a run computes (the published manifest carries the hash)
_LOCATION_FIELDS = frozenset(
    {
        "home",
        "landing_dir",
        "lake_uri",
        "exports_uri",
        "mlflow_tracking_uri",
        "lock_wait_seconds",
        "dask_scheduler",
        "train_plots",
        "shards",
        "shard_workers",
    }
)


def _coerce(name: str, value: Any) -> Any:
    """Convert a TOML/env value to the declared type of field ``name``; raise ValueError naming it."""
    hint = typing.get_type_hints(Settings)[name]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    try:
        if hint is Path or (Path in args):
            return None if value in (None, "") else Path(value)
        if origin is Literal:
            if value not in args:
                raise ValueError(f"must be one of {list(args)}")
            return value
        if hint is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in {"1", "true", "yes", "on"}:
                return True
            if str(value).lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError("must be a boolean")
        if hint is int:
            return int(value)
        if hint is float:
            return float(value)
        if origin is dict:
            return json.loads(value) if isinstance(value, str) else dict(value)
        if str in (hint, *args):
            return None if value is None else str(value)
    except (TypeError, ValueError, json.JSONDecodeError) as exc:
        raise ValueError(f"setting {name!r}: {value!r} is invalid ({exc})") from None
    return value


def _flatten(table: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict) and key not in _FIELDS:
            flat.update(_flatten(value))
        else:
            flat[key] = value
    return flat


def load_settings(
    config_file: Path | str | None = None, base: Settings | None = None, **overrides: Any
) -> Settings:
    """Build the settings. ``config_file`` defaults to $CONTACTRANK_CONFIG or ./contactrank.toml."""
    values: dict[str, Any] = {}
    if base is None:
        path = Path(config_file or os.environ.get(f"{ENV_PREFIX}CONFIG", "contactrank.toml"))
        if path.is_file():
            with path.open("rb") as fh:
                values.update(_flatten(tomllib.load(fh)))
        elif config_file:
            raise FileNotFoundError(f"settings file {path} does not exist")
        for name in _FIELDS:
            env = os.environ.get(ENV_PREFIX + name.upper())
            if env is not None:
                values[name] = env
        if "landing" in values and "landing_dir" not in values:
            values["landing_dir"] = values.pop("landing")
    else:
        values.update(dataclasses.asdict(base))
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
    out = Settings(**{k: _coerce(k, v) for k, v in values.items()})
    for name in ("lake_uri", "exports_uri"):
        if getattr(out, name):
            try:
                location(getattr(out, name))
            except ValueError as exc:
                raise ValueError(f"setting {name!r}: {exc}") from None
    return out


# Process environment every entry point sets before LightGBM and MLflow load: idle OpenMP threads
# sleep instead of spinning (spinning threads slow a fit down badly on a loaded machine with few
# cores); MLflow draws no progress bars, which fill a task's log with carriage-return lines.
RUNTIME_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def runtime_env(env: typing.MutableMapping[str, str] | None = None) -> typing.MutableMapping[str, str]:
    """Add ``RUNTIME_ENV`` to ``env`` (default: ``os.environ``) where not set; an explicit value wins."""
    env = os.environ if env is None else env
    for key, value in RUNTIME_ENV.items():
        env.setdefault(key, value)
    return env
