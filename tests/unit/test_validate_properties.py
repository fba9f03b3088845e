"""Property tests of the ingest validator: no valid row is ever rejected, no invalid row is ever kept."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from contactrank.features import parsers as v
from contactrank.features.landing_rules import IngestDay as _Ctx
from contactrank.features.landing_rules import validate_attempts as _validate_attempts
from contactrank.features.schema import CHANNELS, OUTCOMES
from contactrank.settings import load_settings

D = date(2026, 1, 3)
TZ = "America/Sao_Paulo"
SETTINGS = load_settings(home=Path("/nonexistent-home"))  # only values are read, nothing is written
LO = datetime(2026, 1, 3, tzinfo=UTC) - timedelta(hours=SETTINGS.time_tolerance_hours)
HI = datetime(2026, 1, 4, tzinfo=UTC) + timedelta(hours=SETTINGS.time_tolerance_hours)
PROPS = hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The contract's timestamp grammar, written independently of features.parsers (ASCII only).
_WS = "[ \t\n\f\r]"
_ORACLE = re.compile(
    rf"{_WS}*(\d{{4}})-(\d{{2}})-(\d{{2}})[Tt ](\d{{2}}):(\d{{2}})(?::(\d{{2}}))?(?:[.,](\d{{1,9}}))?"
    rf"{_WS}*(Z|z|UTC|[+-]\d{{2}}(?::?\d{{2}})?)?{_WS}*",
    re.ASCII,
)


def oracle(text: str) -> tuple[datetime, int] | None:
    """(UTC instant, local hour) per the contract, or None when the text is not a valid timestamp."""
    m = _ORACLE.fullmatch(text)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        naive = datetime(
            int(y), int(mo), int(d), int(h), int(mi), int(s or 0), int((frac or "0")[:6].ljust(6, "0"))
        )
    except ValueError:
        return None
    if tz in (None, "Z", "z", "UTC"):
        utc = naive.replace(tzinfo=UTC)
        return utc, utc.astimezone(ZoneInfo(TZ)).hour
    digits = tz[1:].replace(":", "")
    oh, om = int(digits[:2]), int(digits[2:4] or 0)
    if oh > 23 or om > 59:
        return None
    minutes = (oh * 60 + om) * (-1 if tz[0] == "-" else 1)
    utc = naive.replace(tzinfo=timezone(timedelta(minutes=minutes))).astimezone(UTC)
    return utc, (utc.astimezone(ZoneInfo(TZ)).hour if minutes == 0 else naive.hour)


@st.composite
def timestamps(draw, lo: datetime = LO, hi: datetime = HI) -> str:
    """Well-formed ISO 8601 strings in the many shapes providers send."""
    instant = draw(
        st.datetimes(
            min_value=lo.replace(tzinfo=None), max_value=hi.replace(tzinfo=None) - timedelta(microseconds=1)
        )
    )
    offset = draw(st.sampled_from([None, "Z", 0, -180, 330, 60, -600, 840, -720]))
    sep = draw(st.sampled_from(["T", " ", "t"]))
    seconds = draw(st.booleans())
    if not seconds:
        instant = instant.replace(second=0, microsecond=0)
    frac = draw(st.sampled_from(["none", "ms", "us"])) if seconds else "none"
    if frac == "none":
        instant = instant.replace(microsecond=0)
    local = instant + timedelta(minutes=offset if isinstance(offset, int) else 0)
    text = local.strftime(f"%Y-%m-%d{sep}%H:%M" + (":%S" if seconds else ""))
    if frac == "ms":
        text += f".{local.microsecond // 1000:03d}"
        instant = instant.replace(microsecond=(local.microsecond // 1000) * 1000)
    elif frac == "us":
        text += f".{local.microsecond:06d}"
    if offset == "Z":
        text += "Z"
    elif isinstance(offset, int):
        sign = "-" if offset < 0 else "+"
        hh, mm = divmod(abs(offset), 60)
        text += draw(st.sampled_from([f"{sign}{hh:02d}:{mm:02d}", f"{sign}{hh:02d}{mm:02d}"]))
    return draw(st.sampled_from(["", " "])) + text


noise = st.text(alphabet=st.sampled_from(list("0123456789-:+TZ .,tzUC\t")), max_size=32)
mutated = timestamps().flatmap(
    lambda t: st.integers(0, len(t) - 1).flatmap(
        lambda i: st.sampled_from(list("0123456789-:+ TZx")).map(lambda c: t[:i] + c + t[i + 1 :])
    )
)


@PROPS
@given(st.lists(st.one_of(timestamps(), mutated, noise, st.text(max_size=30)), min_size=1, max_size=40))
def test_timestamp_parser_agrees_with_the_contract_grammar(texts):
    ts, hours, ok, present = v.parse_timestamps(pa.array(texts, pa.string()), TZ)
    for i, text in enumerate(texts):
        expected = oracle(text)
        blank = text.strip() == ""
        assert present[i] == (not blank), text
        if blank:
            continue
        assert ok[i] == (expected is not None), text
        if expected is not None:
            assert ts[i].as_py() == expected[0], text
            assert hours[i].as_py() == expected[1], text


ids = st.text(alphabet=st.sampled_from(list("abcXYZ0123456789-_.")), min_size=1, max_size=20)


def case_and_space(values):
    return st.tuples(
        st.sampled_from(values),
        st.sampled_from([str.lower, str.upper, str.title]),
        st.sampled_from(["", " "]),
    ).map(lambda x: x[2] + x[1](x[0]) + x[2])


@st.composite
def valid_rows(draw) -> dict[str, str | None]:
    return {
        "attempt_id": draw(ids),
        "person_id": draw(ids),
        "contact_id": draw(
            st.one_of(
                ids, st.emails().map(str.upper), st.from_regex(r"\(\d\d\) 9\d{4}-\d{4}", fullmatch=True)
            )
        ),
        "channel": draw(case_and_space(CHANNELS)),
        "attempted_at": draw(timestamps()),
        "outcome": draw(case_and_space(OUTCOMES)),
        "campaign_id": draw(st.one_of(st.none(), ids)),
        "duration_s": draw(
            st.one_of(st.none(), st.floats(0, 1e5, allow_nan=False).map(repr), st.integers(0, 9999).map(str))
        ),
    }


def _bad_value(column: str):
    """Strategies of values that break the contract for ``column``."""
    return {
        "attempt_id": st.sampled_from([None, "", "  ", "\t"]),
        "person_id": st.sampled_from([None, "", "   ", "a\x00b", "x" * 513]),
        "contact_id": st.sampled_from([None, " ", "+55\x0011"]),
        "channel": st.text(max_size=10).filter(lambda s: s.strip().lower() not in CHANNELS),
        "outcome": st.text(max_size=12).filter(lambda s: s.strip().lower() not in OUTCOMES),
        "attempted_at": st.one_of(
            st.text(max_size=25).filter(lambda s: s.strip() == "" or oracle(s) is None),
            timestamps(lo=LO - timedelta(days=30), hi=LO),
            timestamps(lo=HI, hi=HI + timedelta(days=30)),
        ),
        "duration_s": st.sampled_from(["-1", "abc", "1,5", "nan", "inf", "--2", "1e"]),
    }[column]


@st.composite
def invalid_rows(draw) -> dict[str, str | None]:
    row = draw(valid_rows())
    column = draw(
        st.sampled_from(
            ["attempt_id", "person_id", "contact_id", "channel", "outcome", "attempted_at", "duration_s"]
        )
    )
    row[column] = draw(_bad_value(column))
    return row


@PROPS
@given(st.lists(st.tuples(st.booleans(), st.data()), min_size=1, max_size=30))
def test_no_valid_row_rejected_and_no_invalid_row_kept(flags):
    rows, valid = [], []
    for i, (is_valid, data) in enumerate(flags):
        row = data.draw(valid_rows() if is_valid else invalid_rows())
        row["attempt_id"] = f"{i}-{row['attempt_id']}" if is_valid else row["attempt_id"]
        rows.append(row)
        valid.append(is_valid)
    table = pa.table({k: pa.array([r[k] for r in rows], pa.string()) for k in rows[0]})
    clean, rej = _validate_attempts(table, _Ctx(SETTINGS, D, Path(".")))
    assert list(rej.ok) == valid
    assert clean.num_rows == sum(valid)
    kept_rows = [r for r, ok in zip(rows, valid, strict=True) if ok]
    for got, row in zip(clean.to_pylist(), kept_rows, strict=True):
        assert got["attempt_id"] == row["attempt_id"].strip()
        assert (
            got["channel"] == row["channel"].strip().lower()
            and got["outcome"] == row["outcome"].strip().lower()
        )
        assert got["attempted_at"] == oracle(row["attempted_at"])[0]


@PROPS
@given(st.lists(st.tuples(st.booleans(), st.data()), min_size=1, max_size=30))
def test_dictionary_encoded_columns_validate_like_plain_strings(flags):
    """A Parquet landing file hands channel, outcome and campaign_id over dictionary-encoded (in
    several chunks, each with its own dictionary): the verdicts and kept values must not change."""
    rows = [data.draw(valid_rows() if ok else invalid_rows()) for ok, data in flags]
    plain = pa.table({k: pa.array([r[k] for r in rows], pa.string()) for k in rows[0]})
    cut = len(rows) // 2
    encoded = plain
    for name in ("channel", "outcome", "campaign_id"):
        col = plain[name]
        chunks = [col.slice(0, cut).combine_chunks(), col.slice(cut).combine_chunks()]
        encoded = encoded.set_column(
            encoded.schema.get_field_index(name),
            name,
            pa.chunked_array([c.dictionary_encode() for c in chunks]),
        )
    ctx = _Ctx(SETTINGS, D, Path("."))
    clean_plain, rej_plain = _validate_attempts(plain, ctx)
    clean_enc, rej_enc = _validate_attempts(encoded, ctx)
    assert list(rej_enc.ok) == list(rej_plain.ok)
    assert (
        list(rej_enc.reason(v.np.arange(len(rows))).to_pylist())
        == rej_plain.reason(v.np.arange(len(rows))).to_pylist()
    )
    assert clean_enc.to_pylist() == clean_plain.to_pylist()


@PROPS
@given(
    st.integers(11, 99),
    st.integers(0, 99_999_999),
    st.sampled_from(
        ["{cc}{a}9{b}", "({a}) 9{b4}-{b5}", "0{a} 9{b}", "+55 {a} 9{b}", "0055{a}9{b}", "+55-{a}-9{b4}.{b5}"]
    ),
)
def test_brazilian_phone_formats_normalise_to_one_e164(area, number, fmt):
    b = f"{number:08d}"
    text = fmt.format(cc="55", a=area, b=b, b4=b[:4], b5=b[4:])
    out = v.normalise_contact_ids(pa.array([text]), "55")[0].as_py()
    assert out == f"+55{area}9{b}"


@PROPS
@given(st.emails())
def test_emails_are_lower_cased_and_trimmed(email):
    out = v.normalise_contact_ids(pa.array([f" {email.upper()} "]), "55")[0].as_py()
    assert out == email.upper().lower()


def _reference_contact_id(text: str, cc: str = "55") -> str:
    """The normalisation rules of features.parsers.normalise_contact_ids, one value at a time."""
    t = text.strip(" \t")
    if re.fullmatch(r"\+[1-9][0-9]{7,14}", t):
        return t
    if "@" in t:
        return t.lower()
    if re.fullmatch(r"(\+|00)?\(?[0-9][0-9 ().\-/]{5,}", t):
        digits = re.sub(r"[^0-9]", "", t)
        plus = t.startswith("+")
        dbl0 = not plus and digits.startswith("00")
        nat = digits[1:] if digits.startswith("0") else digits
        out = "+" + (cc + nat if not plus and not dbl0 and len(nat) <= 11 else digits[2:] if dbl0 else digits)
        return out if re.fullmatch(r"\+[1-9][0-9]{7,14}", out) else t
    return t


@PROPS
@given(
    st.lists(
        st.text(alphabet=st.sampled_from(list("0123456789+()-. @aZé\t/")), max_size=20),
        min_size=1,
        max_size=50,
    )
)
def test_contact_normalisation_matches_the_reference_rules(texts):
    got = v.normalise_contact_ids(pa.array(texts, pa.string()), "55").to_pylist()
    assert got == [_reference_contact_id(t) for t in texts]
