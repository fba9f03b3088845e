"""bench/judge_explore.py: the expected rank-1 cost of exploration rules on a toy file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers.bench import bench_module

judge_explore = bench_module("judge_explore")


def test_costs_are_the_expected_loss_over_the_address_gap():
    # one person: top t (true .4), explorable u (score .3, true .2) and v (score .1, true 0, dead)
    rows = pd.DataFrame(
        {
            "person_id": ["p"] * 3,
            "contact_id": ["t", "u", "v"],
            "score": [0.4, 0.3, 0.1],
            "propensity": [0.9, 0.05, 0.05],
            "status": ["valid", "valid", "dead"],
        }
    )
    p = np.repeat(np.array([[0.4], [0.2], [0.0]]), 14, axis=1)
    out = judge_explore.explore_costs(rows, p, share=0.1, ratios=(0.5,))
    gap = 0.4 - 0.2  # best address minus a uniform one
    assert out["uniform"]["cost_of_address_gap"] == pytest.approx(0.1 * (0.2 + 0.4) / 2 / gap)
    assert out["ratio 0.5"]["cost_of_address_gap"] == pytest.approx(0.1 * 0.2 / gap)  # v is not plausible
    assert out["candidates"]["dead_or_reassigned"] == 0.5
    assert out["candidates"]["beat_the_top_all"] == 0.0
