"""``python -m sentiment_clf.trust new-key NAME``: the command that prints a new trusted API
key and its SENTIMENT_CLF_TRUSTED_API_KEYS entry, under the name the README has always
given it (the feedback room's policy module holds it)."""
from sentiment_clf.feedback.policy import main

if __name__ == "__main__":
    raise SystemExit(main())
