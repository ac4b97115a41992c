"""``python -m sentiment_clf.trust new-key NAME``: the name the README gave ``sentiment-clf
new-key NAME`` (``cli.py``) before there was a command; it runs that command."""
from sentiment_clf.cli import main

if __name__ == "__main__":
    main(prog_name="python -m sentiment_clf.trust")
