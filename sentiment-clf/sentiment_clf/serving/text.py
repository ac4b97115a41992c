"""Turning raw text into the terms the models count: tokenizers and n-grams.

Pure Python (``re``, ``unicodedata``, ``html``): the serving path and training
share these functions, so a live query and a training phrase meet in the same
vocabulary.
"""
from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable

from sentiment_clf.tasks import TOKENIZER

# The treebank writes brackets and quotes as PTB escapes; users type the characters.
_PTB_ESCAPES = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{",
                "-RCB-": "}", "``": '"', "''": '"'}
_PTB_ESCAPE = re.compile("|".join(re.escape(k) for k in _PTB_ESCAPES))
_CURLY_QUOTES = str.maketrans({0x2018: "'", 0x2019: "'", 0x201C: '"', 0x201D: '"'})
_NEGATION = re.compile(r"(?<=\w)(n't)\b")
_CLITIC = re.compile(r"(?<=\w)('(?:s|re|ve|ll|d|m))\b")
_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|\w+(?:[-'.]\w+)*|\.\.\.|--|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Split raw text into lower-case tokens the way the treebank is tokenized.

    Users type ``isn't`` and ``it’s``; the treebank has ``is n't`` and ``it 's``.
    Both give ``["is", "n't"]`` and ``["it", "'s"]`` here, so training phrases and
    live queries meet in the same vocabulary. A token never holds white space.
    """
    text = unicodedata.normalize("NFKC", text)
    text = _PTB_ESCAPE.sub(lambda m: _PTB_ESCAPES[m.group()], text)
    text = text.translate(_CURLY_QUOTES).lower()
    if "'" in text:  # both need one; most queries have none (this runs on every request)
        text = _NEGATION.sub(r" \1", text)
        text = _CLITIC.sub(r" \1", text)
    return _TOKEN.findall(text)


_RETWEET = re.compile(r"(?:^|\s)RT\s+@\w+\s*:?", re.IGNORECASE)
_MENTION = re.compile(r"@\w+")
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_HASHTAG = re.compile(r"#(\w+)")
_SPACES = re.compile(r"\s+")


def clean_tweet(text: str) -> str:
    """Raw tweet -> plain text: HTML entities decoded, retweet markers dropped,
    @mentions and URLs replaced by the placeholders ``@user`` and ``url``, ``#`` dropped
    from hashtags, runs of white space collapsed.

    ``clean_tweet("RT @bob: I &lt;3 it http://t.co/x #fun")`` gives ``"I <3 it url fun"``.
    """
    text = html.unescape(html.unescape(text))  # some tweets are escaped twice: &amp;amp;
    text = _RETWEET.sub(" ", text)
    text = _URL.sub(" url ", text)
    text = _MENTION.sub(" @user ", text)
    text = _HASHTAG.sub(r"\1", text)
    return _SPACES.sub(" ", text).strip()


def tokenize_tweet(text: str) -> list[str]:
    """:func:`clean_tweet`, then :func:`tokenize`."""
    return tokenize(clean_tweet(text))


# The encoder's own preparation (the accurate tier). It differs from clean_tweet's on
# purpose: the encoders were fine-tuned on text prepared this way (links as "http",
# mentions as "@user", nothing dropped), and their answers depend on it.
_ENCODER_URL = re.compile(r"https?://\S+|www\.\S+")
_ENCODER_MENTION = re.compile(r"@\w+")


def for_encoder(text: str) -> str:
    """The text as the encoder was trained to read it: HTML entities decoded, links and
    @mentions replaced by placeholders (tweets are full of them), spaces collapsed."""
    text = html.unescape(text)
    text = _ENCODER_URL.sub("http", text)
    text = _ENCODER_MENTION.sub("@user", text)
    return " ".join(text.split())


WORD_EDGE = "\u2581"  # marks a word's start and end in its character n-grams (never in a token)


def character_ngrams(tokens: list[str], low: int = 2, high: int = 5) -> list[str]:
    """Each token's character n-grams for n from ``low`` to ``high``, the token marked at
    both ends: ``["ok"]`` gives ``["▁o", "ok", "k▁", "▁ok", "ok▁", "▁ok▁"]``. Spelling
    variants, elongations and words written together still share most of theirs."""
    grams: list[str] = []
    for token in tokens:
        marked = WORD_EDGE + token + WORD_EDGE
        for n in range(low, min(high, len(marked)) + 1):
            grams += [marked[i:i + n] for i in range(len(marked) - n + 1)]
    return grams


def tokenize_tweet_characters(text: str) -> list[str]:
    """:func:`tokenize_tweet`, then each token's :func:`character_ngrams` (2 to 5)."""
    return character_ngrams(tokenize_tweet(text))


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {
    TOKENIZER: tokenize, "tweet-v1": tokenize_tweet, "tweet-chars-v1": tokenize_tweet_characters}


def word_ngrams(tokens: list[str], ngram_range: tuple[int, int]) -> list[str]:
    """The terms of a token list: its n-grams for n in ``ngram_range``, joined by spaces,
    in scikit-learn's order (all unigrams, then all bigrams, ...)."""
    low, high = ngram_range
    terms = list(tokens) if low == 1 else []
    for n in range(max(low, 2), min(high, len(tokens)) + 1):
        terms.extend(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return terms
