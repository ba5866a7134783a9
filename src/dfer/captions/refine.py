"""Remove emotion labels and inferred emotions from MLLM captions, keep the facial evidence.

FineCLIPER feeds the caption through the text encoder next to the label prompts; a caption
that says "the person looks happy" hands the classifier the answer instead of the evidence
(lip corners rising, cheeks lifting). Refinement therefore works clause by clause:

* a sentence is cut into clauses at punctuation and at connectives ("as", "while", "which",
  "suggesting", "indicating", ...), keeping each connective with its clause;
* a clause that mentions an emotion but no facial feature ("the person appears happy",
  "suggesting surprise or fear", "which conveys anger") is dropped whole;
* a clause that mentions both ("the eyes widen in fear", "a happy smile") keeps the feature
  and loses the emotion words (with their "in"/"of"/"with" phrase, "an expression of ...",
  intensifiers, articles);
* muscle-state words ("relaxed", "tense") describe a feature when the clause names one ("and
  relaxed eyebrows", "the jaw appears tense") and are kept there; without a feature ("he seems
  tense") they are an inferred emotion like any other;
* a clause that is only connectives ("suggesting" before "that he is upset") goes with the
  clause after it, so the inference is judged, and dropped, as one;
* what is left is re-joined with its own separators (clause punctuation becomes a comma),
  leading connectives are removed and sentences re-capitalised.

FineCLIPER's own example: "..., with a slight upturned mouth, and relaxed eyebrows, indicating
a sense of joy or amusement." loses its last clause and keeps the rest word for word.

The rules are lexical on purpose: deterministic, fast, inspectable, and they keep the raw
text next to the refined caption so that a better refiner can be run later from the table.
"""

from __future__ import annotations

import re

#: Emotion words (adjectives, nouns, verbs) whose presence marks an inferred emotion. The
#: classes of DFEW, FERV39k and MAFW and their common paraphrases in MLLM output.
EMOTION_WORDS: frozenset[str] = frozenset(
    ["happy", "happier", "happiest", "happiness", "joy", "joyful", "joyous", "glad", "delighted", "delight", "cheerful", "cheer", "pleased", "pleasure", "content", "contented", "contentment", "amused", "amusement", "elated", "elation", "excited", "excitement", "enjoyment", "enjoying", "enjoys", "playful", "sad", "sadder", "saddest", "sadness", "unhappy", "unhappiness", "sorrow", "sorrowful", "grief", "grieving", "gloomy", "melancholy", "melancholic", "depressed", "depression", "dejected", "downcast", "miserable", "despair", "disappointed", "disappointment", "heartbroken", "upset", "hurt", "angry", "angrier", "anger", "angered", "mad", "furious", "fury", "rage", "enraged", "irritated", "irritation", "annoyed", "annoyance", "frustrated", "frustration", "hostile", "hostility", "resentful", "resentment", "indignant", "surprise", "surprised", "surprising", "astonished", "astonishment", "amazed", "amazement", "shocked", "shock", "startled", "stunned", "fear", "fearful", "afraid", "scared", "frightened", "fright", "terrified", "terror", "panic", "panicked", "anxious", "anxiety", "nervous", "nervousness", "worried", "worry", "worries", "apprehensive", "apprehension", "alarmed", "uneasy", "distressed", "distress", "disgust", "disgusted", "disgusting", "revulsion", "repulsed", "repulsion", "distaste", "contempt", "contemptuous", "disdain", "disdainful", "scorn", "scornful", "sneering", "smug", "neutral", "neutrality", "calm", "calmness", "composed", "serene", "indifferent", "helpless", "helplessness", "hopeless", "hopelessness", "confused", "confusion", "embarrassed", "embarrassment", "shame", "ashamed", "guilty", "guilt", "emotion", "emotions", "emotional", "emotionally", "mood", "feeling", "feelings", "sentiment", "affect", "disbelief", "concern", "concerned", "bored", "boredom",
     "pensive", "contemplative", "thoughtful", "satisfaction", "satisfied"]
)

#: States of facial muscles that MLLMs use both for a feature ("relaxed eyebrows", "a tense
#: jaw") and for a person's mood ("she seems relaxed"): evidence in a clause that names a
#: facial feature, an inferred emotion in one that does not.
FEATURE_STATE_WORDS: frozenset[str] = frozenset(["relaxed", "tense", "tensed", "tension"])

#: Adverbs of emotion ("smiling happily"): removed as words, the clause stays.
EMOTION_ADVERBS: frozenset[str] = frozenset(
    ["happily", "joyfully", "cheerfully", "gladly", "sadly", "sorrowfully", "gloomily", "miserably", "angrily", "furiously", "irritably", "fearfully", "anxiously", "nervously", "worriedly", "disgustedly", "contemptuously", "scornfully", "smugly", "calmly", "emotionally", "playfully"]
)

#: Words that name a facial feature, a facial action or an observable behaviour: the
#: evidence a caption must keep.
EVIDENCE_WORDS: frozenset[str] = frozenset(
    ["mouth", "mouths", "lip", "lips", "corner", "corners", "chin", "jaw", "jaws", "eye", "eyes", "eyelid", "eyelids", "lid", "lids", "brow", "brows", "eyebrow", "eyebrows", "forehead", "cheek", "cheeks", "nose", "nostril", "nostrils", "teeth", "tooth", "tongue", "gaze", "gazes", "gazing", "blink", "blinks", "blinking", "blinked", "squint", "squints", "squinting", "squinted", "wrinkle", "wrinkles", "wrinkling", "wrinkled", "furrow", "furrows", "furrowed", "furrowing", "dimple", "dimples", "smile", "smiles", "smiling", "smiled", "grin", "grins", "grinning", "frown", "frowns", "frowning", "frowned", "grimace", "grimaces", "grimacing", "pout", "pouts", "pouting", "purse", "pursed", "pursing", "breath", "breathing", "breathes", "breathe", "inhale", "inhales", "inhaling", "exhale", "exhales", "exhaling", "sigh", "sighs", "sighing", "head", "nod", "nods", "nodding", "tilt", "tilts", "tilting", "glance", "glances", "glancing", "stare", "stares", "staring", "speaking", "speaks", "talking", "talks", "pupils", "iris", "lash", "lashes", "temple", "temples",
     "muscle", "muscles", "laugh", "laughs", "laughing", "laughed"]
)

#: Words that introduce an inference rather than an observation; a clause that starts with
#: one and names an emotion is dropped whole.
_CONNECTIVES = (
    "as if", "as though", "as", "while", "whereas", "which", "that", "suggesting",
    "indicating", "implying", "conveying", "showing", "expressing", "displaying",
    "reflecting", "revealing", "signaling", "signalling", "hinting", "giving", "creating",
    "because", "since", "with", "and then", "then",
)

_CONNECTIVE_RE = "|".join(re.escape(c) for c in _CONNECTIVES)
# Split before a connective (kept with the following clause) or at clause punctuation; the
# separator is captured so that the kept clauses can be re-joined the way they were written.
_CLAUSE_SPLIT = re.compile(rf"(\s*[,;:]\s*|\s+[-\u2013\u2014]\s+|\s+(?=(?:{_CONNECTIVE_RE})\b))",
                           re.IGNORECASE)
#: Hedges MLLMs put before an inference ("possibly reflecting sadness", "perhaps as if ...").
_HEDGES = r"possibly|perhaps|probably|likely|maybe|potentially|presumably|seemingly|thus|thereby"
_ONLY_CONNECTIVES = re.compile(rf"^(?:(?:{_CONNECTIVE_RE}|{_HEDGES})\b\s*)+$", re.IGNORECASE)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-z']+")
_LEADING_CONNECTIVE = re.compile(rf"^(?:and|but|or|{_CONNECTIVE_RE})\b\s*", re.IGNORECASE)
_INTENSIFIERS = r"(?:very|quite|rather|slightly|somewhat|extremely|deeply|a\s+bit|a\s+little|mildly|clearly|visibly|genuinely|possibly|perhaps|seemingly)"


def _emotion_alternation() -> str:
    words = sorted(EMOTION_WORDS | EMOTION_ADVERBS, key=len, reverse=True)
    return "|".join(re.escape(w) for w in words)


_EMO = _emotion_alternation()
# "in an expression of astonishment", "with a look of fear", "a sense of joy or amusement".
_EMO_FRAME = re.compile(
    rf"\b(?:(?:in|with|of|out\s+of|from|due\s+to)\s+)?(?:(?:a|an|the)\s+)?(?:{_INTENSIFIERS}\s+)?"
    rf"(?:expression|look|sense|sign|hint|state|display|air)\s+of\s+(?:{_INTENSIFIERS}\s+)?"
    rf"(?:a\s+|an\s+)?(?:{_EMO})(?:\s+(?:or|and)\s+(?:{_EMO}))*\b",
    re.IGNORECASE,
)
# "in fear", "with disgust", "out of anger", "of surprise", "of happiness or joy".
_EMO_PHRASE = re.compile(
    rf"\b(?:in|with|of|out\s+of|from|due\s+to)\s+(?:{_INTENSIFIERS}\s+)?(?:a\s+|an\s+)?"
    rf"(?:{_EMO})(?:\s+(?:or|and)\s+(?:{_EMO}))*\b",
    re.IGNORECASE,
)
# A bare emotion word with its intensifier and a following "or/and <emotion>".
_EMO_WORD = re.compile(
    rf"\b(?:{_INTENSIFIERS}\s+)?(?:{_EMO})(?:\s*(?:,|or|and)\s*(?:{_EMO}))*\b", re.IGNORECASE
)
_ARTICLE = re.compile(r"\b(a|an)\s+([A-Za-z])", re.IGNORECASE)


def _words(text: str) -> set[str]:
    return {w.lower().strip("'") for w in _WORD.findall(text)}


def mentions_emotion(text: str) -> bool:
    """True when ``text`` contains an emotion word or emotion adverb.

    A muscle-state word ("relaxed", "tense") counts only when ``text`` names no facial
    feature: "relaxed eyebrows" is a description, "she seems relaxed" a judgement.
    """
    words = _words(text)
    if words & EMOTION_WORDS or words & EMOTION_ADVERBS:
        return True
    return bool(words & FEATURE_STATE_WORDS) and not words & EVIDENCE_WORDS


def mentions_evidence(text: str) -> bool:
    """True when ``text`` names a facial feature or an observable facial action."""
    return bool(_words(text) & EVIDENCE_WORDS)


def _fix_articles(text: str) -> str:
    def repl(match: re.Match[str]) -> str:
        article, first = match.group(1), match.group(2)
        want = "an" if first.lower() in "aeiou" else "a"
        if article[0].isupper():
            want = want.capitalize()
        return f"{want} {first}"

    return _ARTICLE.sub(repl, text)


def _strip_emotion_words(clause: str) -> str:
    """Remove emotion words from a clause that also carries facial evidence."""
    out = _EMO_FRAME.sub("", clause)
    out = _EMO_PHRASE.sub("", out)
    out = _EMO_WORD.sub("", out)
    out = re.sub(r"\s{2,}", " ", out).strip()
    out = re.sub(r"\s+([,.;:!?])", r"\1", out)
    return _fix_articles(out)


def _refine_clause(clause: str) -> str:
    clause = clause.strip()
    if not clause or not mentions_emotion(clause):
        return clause
    if not mentions_evidence(clause):
        return ""
    return _strip_emotion_words(clause)


def _split_clauses(body: str) -> list[tuple[str, str]]:
    """``(separator before it, clause)`` pairs; a bare connective joins the clause after it."""
    parts = _CLAUSE_SPLIT.split(body)
    pairs = [("", parts[0])] + [(parts[i], parts[i + 1]) for i in range(1, len(parts) - 1, 2)]
    merged: list[tuple[str, str]] = []
    for sep, clause in pairs:
        prev = merged[-1] if merged else None
        if prev is not None and not sep.strip() and _ONLY_CONNECTIVES.match(prev[1].strip()):
            # "suggesting" + "that he is upset": one inference, judged as a whole
            merged[-1] = (prev[0], f"{prev[1].strip()} {clause.strip()}")
        else:
            merged.append((sep, clause))
    return merged


def _refine_sentence(sentence: str) -> str:
    body = sentence.strip()
    end = body[-1] if body and body[-1] in ".!?" else "."
    body = body.rstrip(".!? ")
    original = _split_clauses(body)
    kept = [(sep, c) for sep, c in ((s, _refine_clause(c)) for s, c in original) if c]
    if not kept:
        return ""
    if len(kept) < len(original) and not any(mentions_evidence(c) for _, c in kept):
        return ""  # only filler ("Overall,") is left once the judgement is gone
    kept[0] = ("", _LEADING_CONNECTIVE.sub("", kept[0][1]).strip())
    kept = [(sep, c) for sep, c in kept if c]
    if not kept or not any(_WORD.search(c) for _, c in kept):
        return ""
    text = kept[0][1]
    for sep, clause in kept[1:]:
        # Written separators survive: punctuation as a comma, a space before a connective.
        text += (" " if not sep.strip() else ", ") + clause
    text = text.strip(" ,;:")
    if not text:
        return ""
    return text[0].upper() + text[1:] + ("." if end == "!" else end)


def refine_caption(raw_text: str) -> str:
    """Return ``raw_text`` without emotion labels or inferred emotions.

    Facial-movement evidence is kept verbatim wherever possible; the result may be empty
    when the text carried nothing but an emotion judgement.
    """
    text = re.sub(r"\s+", " ", raw_text or "").strip()
    # Drop list markers and markdown emphasis that chat models like to produce.
    text = re.sub(r"(?:^|\s)(?:[-*\u2022]|\d+[.)])\s+", " ", text)
    text = text.replace("**", "").replace("__", "").strip()
    # Section headers of a chat answer ("Mouth: The lips part ...") are not part of a sentence.
    text = re.sub(r"(?:^|(?<=\s))[A-Z][A-Za-z ]{0,24}:\s+(?=[A-Z])", "", text)
    sentences = (_refine_sentence(s) for s in _SENTENCE_SPLIT.split(text) if s.strip())
    return " ".join(s for s in sentences if s)
