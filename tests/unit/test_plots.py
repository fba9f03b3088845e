"""The training artefacts are drawn without pyplot: each writes a non-empty PNG and returns its path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from contactrank.ml import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return len(data) > len(PNG_SIGNATURE) and data.startswith(PNG_SIGNATURE)


def _scores(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 0.4, n)
    y = (rng.uniform(size=n) < p).astype(int)
    return y, p


def test_plot_calibration_writes_png(tmp_path: Path) -> None:
    y, p = _scores()
    out = tmp_path / "calibration.png"
    assert plots.plot_calibration(y, {"model": p, "raw": np.sqrt(p)}, out) == out
    assert _is_png(out)


def test_plot_gains_writes_png(tmp_path: Path) -> None:
    y, p = _scores()
    out = tmp_path / "lift_gain.png"
    assert plots.plot_gains(y, {"model": p, "random": np.random.default_rng(1).random(len(y))}, out) == out
    assert _is_png(out)


def test_plot_importance_writes_png(tmp_path: Path) -> None:
    importance = pd.Series({f"f_{i}": float(i) for i in range(30)})
    out = tmp_path / "importance_gain.png"
    assert plots.plot_importance(importance, out) == out
    assert _is_png(out)


def test_plot_shap_summary_writes_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    values = pd.DataFrame(
        {
            "f_num": rng.normal(size=200),
            "f_cat": pd.Categorical(rng.choice(["a", "b", None], size=200)),
        }
    )
    contrib = pd.DataFrame(
        {"f_num": rng.normal(size=200), "f_cat": rng.normal(size=200), "bias": np.full(200, -1.0)}
    )
    out = tmp_path / "shap_summary.png"
    assert plots.plot_shap_summary(contrib, values, out) == out
    assert _is_png(out)


def test_plot_confusion_writes_png(tmp_path: Path) -> None:
    out = tmp_path / "confusion.png"
    assert plots.plot_confusion({"tn": 900, "fp": 40, "fn": 30, "tp": 30}, 0.123, out) == out
    assert _is_png(out)
