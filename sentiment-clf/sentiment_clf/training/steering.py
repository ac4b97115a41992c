"""What a retrain may learn from the stored answers, and the check that it was not steered.

Online learning bounds what one client teaches (its learning budget, ``feedback/policy.py``); a
retrain reads every stored answer, the held ones included, so without the same bound
200 answers from 10 addresses could turn a confident prediction around (they did:
"a gorgeous , witty , seductive movie", Positive 0.9995, became Negative 0.99999). So:

1. :func:`within_budget`: a retrain counts a client's answers only as far as its
   learning budget lets it teach online: in any window of the budget (1 per day by
   default), its first answers up to the budget's amount; the rest are left out (and
   counted in the report). A trusted key's answers (``key:<name>``) all count, as online.
2. :func:`steered_families`: the answers that count are grouped into near-duplicate
   families (the same words, numbers and punctuation aside: "a witty movie 17" and
   "a witty movie 18" are one family). A family of answers from clients without a
   trusted key may not move the model further than online learning moved it: where the
   serving model (what the budget let it learn) still gives a family's texts the label
   that it or the shipped model gives them with confidence of at least ``CONFIDENT``,
   the candidate must give it too. The retrain refuses a candidate that does not,
   names the families, and publishes nothing. (Ten near-duplicates, one from each of
   ten addresses and all learned online, moved that movie from 0.9985 to 0.74 Positive;
   refitted, they made it 0.17.) A confident error is corrected by a trusted key's
   answers (or by changing the training data), not by volume.
3. :func:`weightiest_clients`: the clients whose answers weigh most in the retrain, for
   its report.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
from limits import RateLimitItem

from sentiment_clf.feedback.store import FeedbackRow
from sentiment_clf.serving.text import tokenize

CONFIDENT = 0.9  # a serving prediction at least this sure is not turned around by untrusted answers
FAMILY_TEXTS = 50  # texts of one family checked (its first ones)
TRUSTED_PREFIX = "key:"  # a client with a trusted API key (clients.py)


def trusted(client: str | None) -> bool:
    return bool(client and client.startswith(TRUSTED_PREFIX))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite keeps no zone: UTC


def within_budget(rows: Sequence[FeedbackRow], budget: RateLimitItem) -> tuple[list[FeedbackRow], Counter]:
    """``(the answers a retrain counts, in order; how many of each client's it left out)``.

    A client's answer counts when fewer than ``budget.amount`` of its answers counted in
    the budget's window before it, as online learning decides (an answer it learned
    online counts here too). Answers with no client (stored by the command line) count.
    """
    window = timedelta(seconds=budget.get_expiry())
    counted: dict[str, list[datetime]] = defaultdict(list)
    kept: list[FeedbackRow] = []
    left_out: Counter[str] = Counter()
    for row in sorted(rows, key=lambda r: r.id):
        if row.client is None or trusted(row.client):
            kept.append(row)
            continue
        moment = _aware(row.created_at)
        recent = [t for t in counted[row.client] if t > moment - window]
        if len(recent) < budget.amount:
            counted[row.client] = [*recent, moment]
            kept.append(row)
        else:
            left_out[row.client] += 1
    return kept, left_out


def family(text: str) -> str:
    """A near-duplicate family's key: the text's distinct words, lower-cased and sorted,
    numbers and punctuation aside."""
    return " ".join(sorted({token for token in tokenize(text) if any(c.isalpha() for c in token)}))


def steered_families(answers: Sequence[FeedbackRow], labels: Sequence[str],
                     serving: Callable[[list[str]], np.ndarray], candidate: Callable[[list[str]], np.ndarray],
                     shipped: Callable[[list[str]], np.ndarray]) -> list[dict]:
    """The families of untrusted answers whose texts the serving model gives a label it, or
    the ``shipped`` model, gives with at least CONFIDENT (on average), and the candidate
    another: what a retrain must not do. Each argument after ``labels`` gives probabilities
    (texts x ``labels``)."""
    families: dict[str, list[FeedbackRow]] = defaultdict(list)
    for row in answers:
        if not trusted(row.client):
            families[family(row.text)].append(row)
    found = []
    for key, rows in families.items():
        texts = list(dict.fromkeys(row.text for row in rows))[:FAMILY_TEXTS]
        before, after = serving(texts).mean(axis=0), candidate(texts).mean(axis=0)
        held = int(before.argmax())
        sure = max(float(before[held]), float(shipped(texts).mean(axis=0)[held]))
        if sure >= CONFIDENT and int(after.argmax()) != held:
            found.append({"family": key, "answers": len(rows), "clients": len({row.client for row in rows}),
                          "label_asked": Counter(row.label for row in rows).most_common(1)[0][0],
                          "serving": {"label": labels[held], "probability": float(before[held]),
                                      "confidence": sure},
                          "candidate": {"label": labels[int(after.argmax())],
                                        "probability": float(after.max())}})
    return found


def weightiest_clients(counted: Sequence[FeedbackRow], left_out: Counter, top: int = 5) -> list[dict]:
    """The clients with the most answers counted by the retrain (and what it left out of each)."""
    weights = Counter(row.client or "(none)" for row in counted)
    return [{"client": client, "answers_counted": n, "answers_left_out": left_out.get(client, 0)}
            for client, n in weights.most_common(top)]
