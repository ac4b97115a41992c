"""What replicas cost the shared PostgreSQL: 3 instances x 2 workers behind HAProxy
(deploy/haproxy.cfg), idle and under mixed load (16 clients, predictions and feedback),
counted by PostgreSQL itself (pg_stat_database: transactions committed and rolled back,
rows returned) over a fixed window. Each worker reads new feedback and versions every
SYNC_INTERVAL seconds (0.5 by default); this shows what that polling costs.

    python -m bench.replicas [--seconds 20] [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.harness import machine, mixed_load, replica_topology, save_results

logger = logging.getLogger("bench.replicas")


def counters(admin, served, database: str) -> dict[str, float]:
    """PostgreSQL's own counts for ``database``: transactions, rows, and the scans of its
    tables (each query that reads a table scans it once: about the queries that read)."""
    with admin.connect() as conn:
        row = conn.execute(text("SELECT xact_commit + xact_rollback, tup_returned, tup_fetched "
                                "FROM pg_stat_database WHERE datname = :name"), {"name": database}).one()
    with served.connect() as conn:
        scans = conn.execute(text("SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) "
                                  "FROM pg_stat_user_tables")).scalar_one()
    return {"transactions": row[0], "rows_returned": row[1], "rows_fetched": row[2], "table_scans": float(scans),
            "at": time.monotonic()}


def rates(before: dict, after: dict) -> dict[str, float]:
    seconds = after["at"] - before["at"]
    return {key: round((after[key] - before[key]) / seconds, 1) for key in before if key != "at"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    admin_url = args.postgres.replace("postgresql://", "postgresql+psycopg://", 1)
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    database = f"sclf_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    folder = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    url = admin_url.rsplit("/", 1)[0].replace("+psycopg", "") + f"/{database}"
    served = create_engine(admin_url.rsplit("/", 1)[0] + f"/{database}", isolation_level="AUTOCOMMIT")
    try:
        with replica_topology(folder, url, args.redis) as topology:
            balancer = topology["balancer"]
            time.sleep(3)  # past the start's first reads
            before = counters(admin, served, database)
            time.sleep(args.seconds)
            idle = rates(before, counters(admin, served, database))
            logger.info("idle, 3 instances x 2 workers: %s per second", idle)
            before = counters(admin, served, database)
            outcomes = mixed_load(balancer.url, args.seconds, clients=16, feedback_share=0.1)["outcomes"]
            busy = rates(before, counters(admin, served, database))
        done = {"predictions": outcomes["predict 200"], "feedback": outcomes["feedback 201"],
                "failed": sum(n for kind, n in outcomes.items() if not kind.endswith((" 200", " 201")))}
        per_second = {key: round(value / args.seconds, 1) for key, value in done.items()}
        logger.info("under load (%s requests per second): %s per second", per_second, busy)
        save_results("replicas.json", {"machine": machine(), "seconds": args.seconds, "instances": 3, "workers": 2,
                                       "idle_per_second": idle, "load_per_second": busy,
                                       "requests_per_second": per_second})
    finally:
        served.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
