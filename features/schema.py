"""The data contract (docs/contract.md §1) as code: vocabularies and the lake's typed schemas.

One place for every name the stages share, so ingest, features, training and scoring agree.
"""

from __future__ import annotations

import pyarrow as pa

CHANNELS = ("voice", "sms", "email", "whatsapp")

OUTCOMES = (
    "no_answer",
    "busy",
    "voicemail",
    "rejected",
    "invalid",
    "wrong_party",
    "right_party",
    "converted",
    "opt_out",
)
REACH_OUTCOMES = frozenset({"right_party", "converted", "opt_out"})
CONVERSION_OUTCOMES = frozenset({"converted"})

KINDS = ("attempts", "contacts", "suppressions", "persons")
REQUIRED_KINDS = ("attempts",)

# Columns that identify rows but must never be model features.
ID_COLUMNS = ("attempt_id", "person_id", "contact_id", "campaign_id")
# Every model feature column starts with this prefix; nothing else is fed to the model.
FEATURE_PREFIX = "f_"
LABEL_COLUMNS = {"reach": "label_reach", "conversion": "label_conversion"}

# Columns of a landing attempts file (docs/contract.md §1), in contract order.
ATTEMPT_LANDING_COLUMNS = (
    "attempt_id",
    "person_id",
    "contact_id",
    "channel",
    "attempted_at",
    "outcome",
    "campaign_id",
    "duration_s",
)

# --- lake schemas (after validation and normalisation) -----------------------------------
ATTEMPTS = pa.schema(
    [
        ("attempt_id", pa.string()),
        ("person_id", pa.string()),
        ("contact_id", pa.string()),  # normalised: E.164 phones, lower-case e-mails
        ("channel", pa.string()),
        ("attempted_at", pa.timestamp("us", tz="UTC")),
        ("local_hour", pa.int8()),  # in the person's zone, else the provider's offset (person_clocks)
        ("outcome", pa.string()),
        ("campaign_id", pa.string()),
        ("duration_s", pa.float64()),
    ]
)

CONTACTS = pa.schema(  # upserts as delivered (validated, normalised)
    [
        ("person_id", pa.string()),
        ("contact_id", pa.string()),
        ("channel", pa.string()),
        ("source", pa.string()),
        ("consent", pa.bool_()),
        ("active", pa.bool_()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)

CONTACTS_STATE = pa.schema(  # one row per (person_id, contact_id) known by the end of the date
    [
        ("person_id", pa.string()),
        ("contact_id", pa.string()),
        ("channel", pa.string()),
        ("source", pa.string()),  # 'attempts' when the address was only ever seen in attempts
        ("consent", pa.bool_()),
        ("active", pa.bool_()),
        ("first_seen", pa.date32()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)

SUPPRESSIONS = pa.schema(
    [
        ("person_id", pa.string()),  # null: contact-level only
        ("contact_id", pa.string()),  # null: every address of the person
        ("reason", pa.string()),
        ("effective_from", pa.date32()),
        ("origin", pa.string()),  # 'file', 'opt_out_outcome', 'erasure'
    ]
)

# docs/contract.md §2: the columns of the priority file that the scorer ranks (contract v1), in order
SCORED = pa.schema(
    [
        ("person_id", pa.string()),
        ("contact_id", pa.string()),
        ("channel", pa.string()),
        ("rank", pa.int32()),
        ("score", pa.float64()),
        ("best_hour", pa.int32()),
        ("reason", pa.string()),
        ("explore", pa.bool_()),
        ("propensity", pa.float64()),
        ("model_version", pa.string()),
    ]
)
# v1.1 adds each person's clock at the end (v1 readers ignore them): the priority file's columns
PRIORITY = pa.schema([*SCORED, ("timezone", pa.string()), ("best_hour_utc", pa.int32())])

QUARANTINE_META = ("_source_file", "_row_number", "_column", "_reason")
