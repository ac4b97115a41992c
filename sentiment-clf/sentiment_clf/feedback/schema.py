"""The feedback database's tables, and the upgrades of an older schema to this one.

``feedback``        one row per answer a user gave, with the client that gave it (an
                    opaque id) and whether it is learned online, decided once as it
                    is stored (``admission.py``); never deleted.
``model_versions``  retrained models: manifest JSON and the arrays file's bytes.
``activations``     which version serves each model; the newest row not rolled
                    back wins, no row means the base model shipped on disk.
``checkpoints``     what a model learned online, up to a feedback id, packed like a
                    model (``checkpoints.py``), so a start replays only what follows.
``schema_info``     the schema version, for upgrades.
``health_probe``    one row that /ready writes: the database takes writes.
"""
from __future__ import annotations

import logging

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection

from sentiment_clf.feedback.admission import learn_key

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: feedback.client, .learned, .learn_key
metadata = MetaData()
_Id = BigInteger().with_variant(Integer, "sqlite")  # SQLite wants INTEGER for its row ids

feedback = Table(
    "feedback", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("model", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("label", String(64), nullable=False),
    Column("prediction", String(64), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("request_key", String(200), nullable=True, unique=True),  # scoped_request_key: hashed with the client
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("client", String(80), nullable=True),  # "key:<name>" or "ip:<hash>"; None before version 2
    Column("learned", Boolean, nullable=False),  # learned online (else only by a retrain)
    Column("learn_key", String(64), nullable=False),  # learn_key(model, text, label)
    Index("feedback_by_model", "model", "id"),
    Index("feedback_by_learn_key", "model", "learn_key"),
    Index("feedback_by_client", "client", "created_at"),
    sqlite_autoincrement=True,  # ids are never reused
)

model_versions = Table(
    "model_versions", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("model", String(64), nullable=False),
    Column("version", String(64), nullable=False),
    Column("manifest", Text, nullable=False),
    Column("arrays", LargeBinary, nullable=False),
    Column("feedback_upto", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model", "version", name="model_versions_unique"),
    sqlite_autoincrement=True,
)

activations = Table(
    "activations", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("model", String(64), nullable=False),
    Column("version", String(64), nullable=False),
    Column("rolled_back", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("activations_by_model", "model", "id"),
    sqlite_autoincrement=True,
)

checkpoints = Table(
    "checkpoints", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("model", String(64), nullable=False),
    Column("base_version", String(64), nullable=False),
    Column("feedback_upto", BigInteger, nullable=False),
    Column("manifest", Text, nullable=False),
    Column("arrays", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("model", "base_version", "feedback_upto", name="checkpoints_unique"),
    sqlite_autoincrement=True,
)

schema_info = Table("schema_info", metadata,
                    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
                    Column("version", Integer, nullable=False))
# One row (id 1) that /ready updates: the database takes writes (``probe_write``).
health_probe = Table("health_probe", metadata, Column("id", Integer, primary_key=True, autoincrement=False),
                     Column("checked_at", DateTime(timezone=True), nullable=False))


_NEW_COLUMNS = {  # schema version 2, as ALTER TABLE adds them (then filled in)
    "client": "VARCHAR(80)",
    "learned": {"sqlite": "BOOLEAN NOT NULL DEFAULT 0", "postgresql": "BOOLEAN NOT NULL DEFAULT false"},
    "learn_key": "VARCHAR(64) NOT NULL DEFAULT ''",
}
_BATCH = 1000


def upgrade_to_2(conn: Connection, dialect: str, feedback: Table) -> None:
    """Add version 2's columns and indexes to a version-1 ``feedback`` table, in place.

    Old rows have no client; each is learned as the version-1 rule learned it:
    the first answer of each (model, tokenized text, label), in id order. Each step
    can run again (a worker that died half-way, or two starting together).
    """
    have = {column["name"] for column in inspect(conn).get_columns("feedback")}
    for name, kind in _NEW_COLUMNS.items():
        if name not in have:
            ddl = kind[dialect] if isinstance(kind, dict) else kind
            conn.exec_driver_sql(f"ALTER TABLE feedback ADD COLUMN {name} {ddl}")
    seen: set[str] = set()
    changes = []
    rows = conn.execute(select(feedback.c.id, feedback.c.model, feedback.c.text, feedback.c.label)
                        .order_by(feedback.c.id))
    for row in rows:
        key = learn_key(row.model, row.text, row.label)
        changes.append({"row_id": row.id, "key": key, "first": key not in seen})
        seen.add(key)
    statement = (update(feedback).where(feedback.c.id == bindparam("row_id"))
                 .values(learn_key=bindparam("key"), learned=bindparam("first")))
    for start in range(0, len(changes), _BATCH):
        conn.execute(statement, changes[start:start + _BATCH])
    for index in feedback.indexes:
        index.create(conn, checkfirst=True)
    logger.info("upgraded the feedback table to schema version 2 (%d answers)", len(changes))
