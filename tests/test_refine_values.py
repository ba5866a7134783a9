"""Caption refinement, rule by rule, on sentences whose refined text is written out by hand
(issue 25: the mutation run of ``dfer.captions.refine`` found these rules unchecked).

``tests/test_captions_text.py`` checks realistic MLLM answers end to end; these pin the small
rules those answers happen not to reach: how a sentence ends, the article before a removed
emotion word, the verb test that drops fragments, and text clean-up.
"""

from __future__ import annotations

import re

import pytest

from dfer.captions import refine
from dfer.captions.refine import has_verb, mentions_emotion, mentions_evidence, refine_caption


@pytest.mark.parametrize(("raw", "want"), [
    # a sentence keeps its own end: "?" stays, "!" becomes ".", none gets "."
    ("The lips part?", "The lips part?"),
    ("The lips part!", "The lips part."),
    ("The lips part", "The lips part."),
    ("The lips form an X", "The lips form an X."),  # a final capital X is text, not an ending
    # the article follows the word after a removed emotion word, in its own case
    ("An angry frown creases the brow.", "A frown creases the brow."),
    ("A sad eye roll follows.", "An eye roll follows."),
    ("The brows lower into an angry frown.", "The brows lower into a frown."),
    ("The mouth opens into a sad oval.", "The mouth opens into an oval."),
    ("Lips (upper): An angry grimace forms.", "Lips (upper): A grimace forms."),  # mid-sentence capital
    # no space is left before punctuation where an emotion phrase was cut out
    ("The lips part in fear .The eyes widen.", "The lips part.The eyes widen."),
    # an emotion noun phrase goes with the "and" before it, not only with the one after it
    ("The eyes are wide open and a calm face.", "The eyes are wide open."),
    ("A calm face and the lips part.", "The lips part."),
    # a changed sentence without a verb is dropped; an unchanged one is kept as written
    ("A happy smile.", ""),
    ("Wide eyes and a steady gaze.", "Wide eyes and a steady gaze."),
    # a connective joined to the clause after it keeps the separator written before it
    ("The brows lower indicating that the lips press together.",
     "The brows lower indicating that the lips press together."),
    ("The brows lower, indicating that the lips press together.",
     "The brows lower, indicating that the lips press together."),
    # clean-up: whitespace runs, markdown underscores, nothing, no words
    ("The  lips\n part.", "The lips part."),
    ("The __lips__ part.", "The lips part."),
    ("", ""),
    ("42.", ""),
])
def test_refine_rules_by_hand(raw: str, want: str) -> None:
    assert refine_caption(raw) == want


def test_no_caption_refines_to_nothing() -> None:
    assert refine_caption(None) == ""  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "verb"), [
    # inflected forms: -es after a sibilant, a doubled consonant before -ed / -ing
    ("she watches", True), ("the lips press", True), ("the lips pinches", True),
    ("dropped", True), ("nodding", True), ("the lips grinned", True),
    # base forms count after a cue only: a plural noun, a plural pronoun, a modal ...
    ("They smile", True), ("the lips part", True), ("'smiles'", True),
    ("Smile and wide eyes", False),  # a first word has no word before it
    ("the man's smile", False), ("the glass face", False),  # possessive / -ss: no plural
    # nouns that end like verb forms are not verbs
    ("wide eyes", False), ("facets", False), ("two lookalikes", False),
    ("showcased smile", False), ("the showcases", False), ("an openended gaze", False),
])
def test_has_verb_by_hand(text: str, verb: bool) -> None:
    assert has_verb(text) is verb


def test_quoted_words_are_words() -> None:
    assert mentions_emotion("'sad'") and mentions_evidence("the 'eyes'")
    assert not mentions_emotion("the 'eyes'")


def test_emotion_alternation_lists_every_word_longest_first() -> None:
    """The regex alternation of emotion words and adverbs: each once, escaped, longest first
    (a regex takes the first alternative that fits, so "happily" must come before "happy")."""
    alternation = refine._emotion_alternation()
    parts = alternation.split("|")
    words = refine.EMOTION_WORDS | refine.EMOTION_ADVERBS
    assert sorted(parts) == sorted(re.escape(w) for w in words)
    lengths = [len(p) for p in parts]
    assert lengths == sorted(lengths, reverse=True)
    assert parts.index("happily") < parts.index("happy")
