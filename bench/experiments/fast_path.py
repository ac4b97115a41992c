"""What one fast-tier answer costs through the web's call to serving, in-process.

    python -m bench.experiments.fast_path
    PYTHONPATH=<another checkout>/sentiment-clf python -m bench.experiments.fast_path

The second form measures another checkout's code (an older commit, say) with this
script, so two layouts are compared side by side on one machine: the median of 7
rounds of 5,000 answers to one query, and of 5 rounds of 1,000 ``GET /`` through
Flask's test client.
"""
from __future__ import annotations

import importlib
import json
import logging
import statistics
import tempfile
import time


def median_microseconds(call, rounds: int, repeats: int) -> float:
    for _ in range(repeats // 2):
        call()
    found = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeats):
            call()
        found.append((time.perf_counter() - started) / repeats * 1e6)
    return statistics.median(found)


def main() -> None:
    import app as entry

    logging.disable(logging.WARNING)
    folder = tempfile.mkdtemp()
    served = entry.create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{folder}/bench.sqlite",
                               "SYNC_INTERVAL": 3600})
    services = served.extensions["sentiment_clf"]
    query = "that movie was boring"
    with served.test_request_context("/"):
        if hasattr(services, "answers"):  # since the rooms: serving's front door
            def call():
                return services.answers("sentiment", [query], "fast", False)[0]
        else:  # before: the web's own predict(services, name, query, explain, variant)
            predict = importlib.import_module("sentiment_clf.web.answers").predict

            def call():
                return predict(services, "sentiment", query, False, "fast")
        answer_us = median_microseconds(call, 7, 5000)
    client = served.test_client()
    get_us = median_microseconds(lambda: client.get("/?query=that movie was boring"), 5, 1000)
    print(json.dumps({"code": entry.__file__, "answer_us": round(answer_us, 2), "get_us": round(get_us, 1)}))


if __name__ == "__main__":
    main()
