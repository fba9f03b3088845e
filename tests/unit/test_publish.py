"""Publishing: contract files, manifest, CSV formula escaping, atomic rerun, pseudonymisation."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import date

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from helpers.airflow_harness import CONTRACT_COLUMNS

from contactrank.errors import InputError, NotReady
from contactrank.features.lake import write_partition
from contactrank.ml import publish as pub
from contactrank.ml.score import REPORT_FILE, SCORES_SCHEMA

D = date(2026, 11, 20)
CONTRACT = CONTRACT_COLUMNS  # the test-side copy of docs/contract.md §2


def write_scores(settings, d: date = D, rows: list[tuple] | None = None, version: str = "4") -> None:
    """rows: (person_id, contact_id, channel, rank, score, reason)."""
    rows = rows or [
        ("p1", "+5511987654321", "voice", 1, 0.61, "recent_success;answers_evenings"),
        ("p1", '=HYPERLINK("http://x")', "email", 2, 0.20, "baseline"),
        ("p2", "@SUM(A1)", "email", 1, 0.33, "explore"),
        ("p2", "-cmd|' /C calc'!A0", "sms", 2, 0.10, "many_failures"),
        ("+p3", "-15", "voice", 1, 0.05, "\tnew_address"),
    ]
    n = len(rows)
    table = pa.table(
        {
            "person_id": [r[0] for r in rows],
            "contact_id": [r[1] for r in rows],
            "channel": [r[2] for r in rows],
            "rank": [r[3] for r in rows],
            "score": [r[4] for r in rows],
            "best_hour": [19] * n,
            "reason": [r[5] for r in rows],
            "explore": [r[5] == "explore" for r in rows],
            "propensity": [0.95 if r[3] == 1 else 0.0 for r in rows],
            "model_version": [version] * n,
            "_raw": [0.0] * n,
            "_invalid": [False] * n,
            "_n_attempts": [1] * n,
            "_greedy_rank": [r[3] for r in rows],
        },
        schema=SCORES_SCHEMA,
    )
    report = {
        "model": {"name": "contactrank", "version": version, "run_id": "run-" + version},
        "persons_left_out_cap": 2,
        "persons_left_out_suppression": 3,
        "addresses_capped": 5,
        "addresses_suppressed": 7,
        "addresses_invalid_dropped": 1,
        "explored_persons": 1,
    }
    write_partition(settings, "scores", d, table, extra_files={REPORT_FILE: json.dumps(report).encode()})


def test_publish_writes_the_contract_directory(settings):
    write_scores(settings)
    out = pub.publish(settings, D)
    folder = settings.exports / "priority" / "date=2026-11-20"
    assert sorted(p.name for p in folder.iterdir()) == [
        "_SUCCESS",
        "_manifest.json",
        "priority.csv",
        "priority.parquet",
    ]
    table = pq.read_table(folder / "priority.parquet")
    assert table.column_names == CONTRACT
    assert table.schema.field("rank").type == pa.int32() and table.schema.field("explore").type == pa.bool_()
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert manifest["schema_version"] == "1.1" and manifest["valid_from"] == "2026-11-21"
    assert manifest["model"] == {"name": "contactrank", "version": "4", "run_id": "run-4"}
    assert manifest["rows"] == 5 and manifest["persons"] == 3
    assert manifest["persons_left_out"] == {"cap": 2, "suppression": 3, "erasure": 0}
    assert manifest["config_hash"] == settings.config_hash() and manifest["created_at"]
    for name in ("priority.parquet", "priority.csv"):
        assert manifest["files"][name]["sha256"] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
    assert out["rows"] == 5
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_csv_cells_are_escaped_against_formula_injection_phones_included(settings):
    write_scores(settings)
    pub.publish(settings, D)
    csv = pacsv.read_csv(
        settings.exports / "priority" / "date=2026-11-20" / "priority.csv",
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in ("person_id", "contact_id", "reason")}
        ),
    ).to_pylist()
    by_contact = {r["contact_id"]: r for r in csv}
    # every leading = + - @ tab CR is escaped, numbers written as text included (the OWASP rule)
    assert "'+5511987654321" in by_contact
    assert "'-15" in by_contact
    assert '\'=HYPERLINK("http://x")' in by_contact
    assert "'@SUM(A1)" in by_contact
    assert "'-cmd|' /C calc'!A0" in by_contact
    assert by_contact["'-15"]["person_id"] == "'+p3" and by_contact["'-15"]["reason"] == "'\tnew_address"
    # the parquet keeps the raw values
    raw = (
        pq.read_table(settings.exports / "priority" / "date=2026-11-20" / "priority.parquet")
        .column("contact_id")
        .to_pylist()
    )
    assert '=HYPERLINK("http://x")' in raw and "+5511987654321" in raw


@pytest.mark.parametrize(
    "cell,escaped",
    [
        ("=1+1", True),
        ("@x", True),
        ("+x", True),
        ("-x", True),
        ("+", True),
        ("+5511987654321", True),
        ("-1.5", True),
        ("a=b", False),
        ("", False),
    ],
)
def test_escape_rule(cell, escaped):
    assert (pub.escape_cell(cell) == "'" + cell) is escaped
    table = pub.escape_formulas(pa.table({"c": [cell]}))
    assert table.column("c")[0].as_py() == pub.escape_cell(cell)


def test_rerun_replaces_the_directory(settings):
    write_scores(settings)
    pub.publish(settings, D)
    write_scores(settings, rows=[("p9", "+5511000000009", "voice", 1, 0.5, "baseline")], version="5")
    pub.publish(settings, D)
    folder = settings.exports / "priority" / "date=2026-11-20"
    assert pq.read_table(folder / "priority.parquet").column("person_id").to_pylist() == ["p9"]
    assert json.loads((folder / "_manifest.json").read_text())["model"]["version"] == "5"
    assert sorted(p.name for p in folder.parent.iterdir()) == ["date=2026-11-20"]


def test_pseudonymised_exports_use_hmac_of_the_ids(settings, monkeypatch):
    write_scores(settings)
    s = settings.replace(pseudonymise_exports=True)
    with pytest.raises(InputError, match="CONTACTRANK_HMAC_KEY"):
        pub.publish(s, D)
    monkeypatch.setenv("CONTACTRANK_HMAC_KEY", "k3y")
    pub.publish(s, D)
    table = pq.read_table(settings.exports / "priority" / "date=2026-11-20" / "priority.parquet")
    expected = hmac.new(b"k3y", b"+5511987654321", hashlib.sha256).hexdigest()
    assert expected in table.column("contact_id").to_pylist()
    assert "p1" not in table.column("person_id").to_pylist()


def test_publish_without_scores_is_not_ready(settings):
    with pytest.raises(NotReady, match="scores"):
        pub.publish(settings, D)
    assert not (settings.exports / "priority" / "date=2026-11-20").exists()
