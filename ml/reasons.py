"""Reason codes: per-row feature contributions grouped by name pattern into readable codes.

Contributions are additive decompositions of the model's raw score (log-odds for ``binary``):
``raw = bias + sum(contributions)``. Two ways to get them:

- ``shap_contributions`` — LightGBM ``pred_contrib`` (TreeSHAP) via ``ContactModel.contributions``.
  Exact Shapley values, but orders of magnitude slower than a prediction: fine to explain a
  handful of rows, far too slow for millions of candidates.
- ``path_contributions`` — the path (Saabas) decomposition: every split on a tree path moves the
  node value by ``value(child) - value(node)``, credited to the split's feature. It needs one
  ``pred_leaf`` pass (the cost of a prediction) plus a table lookup per tree, and sums to the raw
  score exactly like ``pred_contrib``. Scoring uses this one.

The mapping from features to codes (``GROUPS``) is documented in docs/scoring.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from contactrank.ml.model import ContactModel


@dataclass(frozen=True)
class Group:
    """Features whose summed contribution yields ``positive`` (> 0) or ``negative`` (< 0) code."""

    name: str
    pattern: str
    positive: str | None
    negative: str | None


# First matching group wins, so the specific patterns come before the broad ones.
GROUPS: tuple[Group, ...] = (
    Group(
        "wrong_party",
        r"^f_c_(wrong_party_\d+d|days_since_wrong_party|wrong_party_share)$",
        None,
        "wrong_party_before",
    ),
    Group("invalid", r"^f_c_(invalid_\d+d|days_since_invalid)$", None, "invalid_before"),
    Group(
        "timing",
        r"^(f_hour\w*|f_dow|f_c_(reach|attempt)_hour_\w+|f_c_reach_dow_\d|f_p_(reach|attempt)_hour_\w+"
        r"|f_p_hour_profile_\w+|f_p_reach_share_(morning|midday|afternoon|evening|night))$",
        "answers_{bucket}",
        "bad_time",
    ),
    # The person answers on a newer address: this one may be dead or reassigned.
    Group("superseded", r"^f_c_(reached_elsewhere|newer_address)_days$", None, "moved_on"),
    Group(
        "success",
        r"^f_c_(reach_\d+d|conv_\d+d|reach_rate_hl\d+|days_since_reach|last_outcome)$",
        "recent_success",
        "no_recent_success",
    ),
    Group(
        "failures",
        r"^f_c_(attempts_\d+d|noanswer_\d+d|fail_streak|days_since_attempt)$",
        "few_failures",
        "many_failures",
    ),
    Group("newness", r"^f_(c_age_days|source)$", "new_address", "old_address"),
    Group(
        "channel",
        r"^f_(channel|g_channel_reach_rate_\d+d|p_reach_share_(voice|sms|email|whatsapp))$",
        "good_channel",
        "weak_channel",
    ),
    Group("person", r"^f_p_", "person_reachable", "person_hard_to_reach"),
    Group("profile", r"^f_attr_", "profile_fit", "profile_mismatch"),
    # Population and calendar features are the same for every candidate of a day: they explain
    # the day, not the address, so they never make a code (their share is ignored).
    Group("calendar", r"^f_(month|dom|g_)", None, None),
)
OTHER = Group("other", r".*", "other_positive", "other_negative")

# Below this absolute contribution (log-odds) a group says nothing worth a code.
MIN_ABS_CONTRIBUTION = 0.02
MAX_CODES = 2
BASELINE_CODE = "baseline"
_BUCKETS = ("morning", "midday", "afternoon", "evening", "night")


def hour_bucket(hour: int) -> str:
    """The agreed hour buckets: morning 8-11, midday 12-14, afternoon 15-17, evening 18-21, night."""
    if 8 <= hour <= 11:
        return "morning"
    if 12 <= hour <= 14:
        return "midday"
    if 15 <= hour <= 17:
        return "afternoon"
    if 18 <= hour <= 21:
        return "evening"
    return "night"


def group_of(feature: str) -> Group:
    """The reason group a feature name belongs to."""
    for group in GROUPS:
        if re.search(group.pattern, feature):
            return group
    return OTHER


def _all_groups() -> tuple[Group, ...]:
    return (*GROUPS, OTHER)


def group_matrix(features: list[str]) -> np.ndarray:
    """0/1 matrix (features x groups) that sums feature contributions into group contributions."""
    groups = _all_groups()
    m = np.zeros((len(features), len(groups)), dtype="float64")
    for i, f in enumerate(features):
        m[i, groups.index(group_of(f))] = 1.0
    return m


def shap_contributions(model: ContactModel, frame: pd.DataFrame, num_threads: int = 0) -> np.ndarray:
    """Group contributions (rows x groups) from LightGBM ``pred_contrib`` (exact TreeSHAP, slow)."""
    contrib = model.contributions(frame, num_threads=num_threads)
    return contrib[model.features].to_numpy() @ group_matrix(model.features)


class PathExplainer:
    """Path (Saabas) contributions per group, from ``pred_leaf`` and per-leaf lookup tables.

    Trees are taken in pairs: the table of a pair is indexed by (leaf of the first, leaf of the
    second) and holds both trees' group contributions, halving the lookups; tables are stored
    group-major in float32 and a pair only updates the groups its paths touch. This keeps the
    explanation of millions of rows to seconds (see docs/scoring.md).
    """

    def __init__(self, model: ContactModel):
        self.model = model
        gm = group_matrix(model.features)
        dump = model.booster.dump_model()
        self.n_groups = gm.shape[1]
        self.bias = 0.0
        tables: list[np.ndarray] = []
        for tree in dump["tree_info"]:
            root = tree["tree_structure"]
            table = np.zeros((int(tree["num_leaves"]), self.n_groups), dtype=np.float64)
            if "split_index" not in root:  # a single-leaf tree is a constant (dumped without leaf_index)
                self.bias += float(root["leaf_value"])
            else:
                self.bias += float(root["internal_value"])
                self._walk(root, table, gm)
            tables.append(table)
        self.n_trees = len(tables)
        self.pairs: list[tuple[int, int | None, int, np.ndarray, list[int]]] = []
        for i in range(0, len(tables), 2):
            a = tables[i]
            if i + 1 < len(tables):
                b = tables[i + 1]
                both = (a[:, None, :] + b[None, :, :]).reshape(-1, self.n_groups)
                j, width = i + 1, b.shape[0]
            else:
                both, j, width = a, None, 1
            groups = [g for g in range(self.n_groups) if np.any(both[:, g] != 0)]
            self.pairs.append((i, j, width, np.ascontiguousarray(both.T, dtype=np.float32), groups))

    @staticmethod
    def _walk(node: dict, table: np.ndarray, gm: np.ndarray) -> None:
        stack = [(node, np.zeros(gm.shape[1]))]
        while stack:
            n, acc = stack.pop()
            if "leaf_index" in n:
                table[int(n["leaf_index"])] = acc
                continue
            value = float(n["internal_value"])
            g = gm[int(n["split_feature"])]
            for side in ("left_child", "right_child"):
                child = n[side]
                child_value = float(child["leaf_value"] if "leaf_index" in child else child["internal_value"])
                stack.append((child, acc + g * (child_value - value)))

    def contributions(self, frame: pd.DataFrame, num_threads: int = 0) -> np.ndarray:
        """Group contributions (rows x groups); their row sum plus ``bias`` is the raw margin."""
        return self.contributions_matrix(self.model.prepare(frame), num_threads=num_threads)

    def contributions_matrix(self, x, num_threads: int = 0) -> np.ndarray:
        """As ``contributions``, from an already prepared input (frame or float matrix)."""
        n = x.shape[0]
        if n == 0 or self.n_trees == 0:
            return np.zeros((n, self.n_groups))
        leaves = self.model.booster.predict(x, pred_leaf=True, num_threads=num_threads)
        lv = np.ascontiguousarray(np.asarray(leaves, dtype=np.int64).reshape(n, -1).T)  # trees x rows
        out = np.zeros((self.n_groups, n), dtype=np.float32)
        idx = np.empty(n, dtype=np.int64)
        tmp = np.empty(n, dtype=np.float32)
        for i, j, width, table, groups in self.pairs:
            if j is None:
                idx[:] = lv[i]
            else:
                np.multiply(lv[i], width, out=idx)
                idx += lv[j]
            for g in groups:
                np.take(table[g], idx, out=tmp)
                out[g] += tmp
        return out.T.astype(np.float64)


def _slot(groups: tuple[Group, ...], idx: np.ndarray, value: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """The code of one ranked slot per row ('' when too small or the group has no code for its sign)."""
    out = np.full(len(idx), "", dtype=object)
    big = np.abs(value) >= MIN_ABS_CONTRIBUTION
    for j, g in enumerate(groups):
        for sign, code in ((True, g.positive), (False, g.negative)):
            if code is None:
                continue
            mask = big & (idx == j) & ((value > 0) == sign)
            if not mask.any():
                continue
            if "{bucket}" in code:
                for b in _BUCKETS:
                    out[mask & (buckets == b)] = code.format(bucket=b + "s")
            else:
                out[mask] = code
    return out


def codes(group_contrib: np.ndarray, best_hour: np.ndarray | list[int]) -> list[str]:
    """``;``-joined reason codes: the (at most two) groups with the largest |contribution|."""
    groups = _all_groups()
    n = group_contrib.shape[0]
    if n == 0:
        return []
    silent = np.array([g.positive is None and g.negative is None for g in groups])
    ranked = np.where(silent[None, :], 0.0, group_contrib)
    order = np.argsort(-np.abs(ranked), axis=1, kind="stable")[:, :MAX_CODES]
    buckets = np.array([hour_bucket(int(h)) for h in range(24)], dtype=object)[
        np.asarray(best_hour, dtype=np.int64) % 24
    ]
    rows = np.arange(n)
    slots = [_slot(groups, order[:, k], ranked[rows, order[:, k]], buckets) for k in range(order.shape[1])]
    joined = pd.Series(slots[0])
    for extra in slots[1:]:
        e = pd.Series(extra)
        joined = joined.where(e == "", joined + ";" + e).where(joined != "", e)
    joined = joined.str.strip(";").replace("", BASELINE_CODE)
    return joined.tolist()


def explain(
    model: ContactModel, frame: pd.DataFrame, best_hour, method: str = "path", num_threads: int = 0
) -> list[str]:
    """Reason codes for the rows of ``frame`` (a model input with its context columns)."""
    if method == "shap":
        contrib = shap_contributions(model, frame, num_threads=num_threads)
    else:
        contrib = PathExplainer(model).contributions(frame, num_threads=num_threads)
    return codes(contrib, best_hour)
