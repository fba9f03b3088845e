"""Settings of the small worlds that tests run the real CLI on, day after day."""

from __future__ import annotations

# small and fast, still the real pipeline: a champion exists from the 3rd or 4th day on
FAST = {
    "CONTACTRANK_MIN_TRAIN_DAYS": "2",
    "CONTACTRANK_VALID_DAYS": "1",
    "CONTACTRANK_NUM_BOOST_ROUND": "60",
    "CONTACTRANK_GATE_AUC_FLOOR": "0.5",
    "CONTACTRANK_GATE_ECE_CAP": "0.5",
}
