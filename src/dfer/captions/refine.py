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
* an emotion said of someone through a linking verb ("her face looks calm", "he does not
  appear angry") is a judgement, even next to a feature word: the clause goes whole. A new
  subject after "and" ("... closed and her face looks calm") starts a clause of its own, and
  a judgement joined to an action ("appears nervous and keeps glancing") leaves the action;
* an emotion noun phrase ("a calm face", "a neutral expression") goes with its "and";
  "without any sign of fear" goes whole;
* an inference clause ("indicating fatigue", "suggesting he is thinking") that names no facial
  evidence goes even without an emotion word: it is a reading, not an observation;
* what is left is re-joined with its own separators (clause punctuation becomes a comma, a
  list item's colon stays), leading connectives are removed and sentences re-capitalised;
* a sentence that refinement changed and that no longer has a verb ("Face and steady gaze.")
  is dropped: a caption is a list of observations, not of fragments.

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
#: Who a clause is about: after "and", one of these starts a new clause ("and her face ...").
_SUBJECTS = r"(?:her|his|their|its|the|she|he|they|it|this|that)"
# Split before a connective (kept with the following clause), before "and" + a new subject,
# or at clause punctuation; the separator is captured so that the kept clauses can be
# re-joined the way they were written.
_CLAUSE_SPLIT = re.compile(rf"(\s*[,;:]\s*|\s+[-\u2013\u2014]\s+|\s+(?=(?:{_CONNECTIVE_RE})\b)"
                           rf"|\s+(?=and\s+{_SUBJECTS}\b))", re.IGNORECASE)
#: Connectives that introduce a reading of the face rather than an observation of it.
_INFERENCE_START = re.compile(
    r"^(?:(?:possibly|perhaps|probably|likely|maybe|thus|thereby)\s+)?(?:suggesting|indicating|"
    r"implying|conveying|signaling|signalling|hinting|reflecting|revealing|expressing|"
    r"which\s+(?:(?:may|might|could|can|would)\s+)?(?:indicates?|suggests?|implies|imply|"
    r"conveys?|signals?|reflects?|reveals?|expresses|express))\b", re.IGNORECASE)
#: Hedges MLLMs put before an inference ("possibly reflecting sadness", "perhaps as if ...").
_HEDGES = r"possibly|perhaps|probably|likely|maybe|potentially|presumably|seemingly|thus|thereby"
_ONLY_CONNECTIVES = re.compile(rf"^(?:(?:{_CONNECTIVE_RE}|{_HEDGES})\b\s*)+$", re.IGNORECASE)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-z']+")
_LEADING_CONNECTIVE = re.compile(rf"^(?:and|but|or|{_CONNECTIVE_RE})\b\s*", re.IGNORECASE)
_INTENSIFIERS = r"(?:very|quite|rather|slightly|somewhat|extremely|deeply|a\s+bit|a\s+little|mildly|clearly|visibly|genuinely|possibly|perhaps|seemingly)"


#: Linking verbs: "<subject> <linking verb> <emotion>" is a judgement of the person.
_LINKING = (r"(?:(?:does|do|did)\s+not\s+|doesn't\s+|don't\s+|didn't\s+)?"
            r"(?:appears?|appeared|seems?|seemed|looks?|looked|feels?|felt|becomes?|became|"
            r"remains?|remained|is|are|was|were|be|being|stays?|stayed|grows?|grew)"
            r"(?:\s+not)?(?:\s+to\s+be)?(?:\s+to\s+feel)?")
_EMO_LIST = rf"(?:{_INTENSIFIERS}\s+)?(?:{{emo}})(?:\s*(?:,|or|and)\s*(?:{_INTENSIFIERS}\s+)?(?:{{emo}}))*"


def _emotion_alternation() -> str:
    words = sorted(EMOTION_WORDS | EMOTION_ADVERBS, key=len, reverse=True)
    return "|".join(re.escape(w) for w in words)


_EMO = _emotion_alternation()
_EMO_STATE = "|".join(re.escape(w) for w in sorted(
    EMOTION_WORDS | FEATURE_STATE_WORDS, key=len, reverse=True))
# "appears nervous and keeps glancing": the judgement and its "and" go, the action stays.
_JUDGEMENT_AND = re.compile(rf"\b{_LINKING}\s+{_EMO_LIST.format(emo=_EMO)}\s+and\s+(?=[a-z])",
                            re.IGNORECASE)
# "... and looks rather bored": a judgement joined to the end of an observation
_JUDGEMENT_TAIL = re.compile(rf"\s*,?\s*\b(?:and|but)\s+{_LINKING}\s+{_EMO_LIST.format(emo=_EMO_STATE)}\b",
                             re.IGNORECASE)
# "her face looks calm", "he does not appear angry", "she seems genuinely relaxed"
_JUDGEMENT = re.compile(rf"\b{_LINKING}\s+{_EMO_LIST.format(emo=_EMO_STATE)}\b", re.IGNORECASE)
# "a calm face", "a neutral expression" (with its "and"): the emotion names the whole phrase
_EMO_NOUNS = r"(?:face|expression|look|demeanou?r|appearance|countenance|manner|mood|air)"
_EMO_NP = re.compile(
    rf"\b(?:(?:a|an|the)\s+)?{_EMO_LIST.format(emo=_EMO)}\s+{_EMO_NOUNS}\b(?:\s*,?\s*(?:and|or)\b)?",
    re.IGNORECASE)
_EMO_NP_LEADING = re.compile(
    rf"\s*,?\s*\b(?:and|or)\s+(?:(?:a|an|the)\s+)?{_EMO_LIST.format(emo=_EMO)}\s+{_EMO_NOUNS}\b",
    re.IGNORECASE)
# "without any sign of disgust", "with no hint of fear", "no trace of anger"
_EMO_ABSENT = re.compile(
    rf"\b(?:without|with\s+no|no)\s+(?:(?:any|a|an|the)\s+)?(?:(?:visible|obvious|clear)\s+)?"
    rf"(?:(?:sign|signs|trace|traces|hint|hints|indication|look|expression)\s+of\s+)?"
    rf"{_EMO_LIST.format(emo=_EMO)}\b", re.IGNORECASE)
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


#: Verbs of MLLM face descriptions, base forms: a word counts as a verb in one of its
#: inflected forms (3rd person -s, -ed, -ing), or in a base form after a modal, "to", "not"
#: or a plural pronoun. Base forms alone ("steady gaze", "a smile") are taken as nouns.
VERB_BASES: frozenset[str] = frozenset(
    ["appear", "arch", "begin", "bite", "blink", "blush", "bow", "breathe", "chew", "clench",
     "close", "come", "compress", "continue", "cover", "crease", "crinkle", "cross", "cry",
     "curl", "curve", "dart", "deepen", "dilate", "direct", "draw", "drift", "droop", "drop",
     "exhale", "face", "fall", "fill", "fix", "flare", "flicker", "flush", "flutter", "focus",
     "follow", "form", "frown", "furrow", "gaze", "gesture", "glance", "go", "grimace", "grin",
     "hold", "inhale", "jerk", "keep", "knit", "laugh", "lean", "lick", "lift", "listen", "look",
     "lower", "meet", "move", "narrow", "nod", "open", "part", "pinch", "point", "pout", "press",
     "pucker", "pull", "purse", "puff", "quicken", "quiver", "raise", "reach", "redden", "relax",
     "remain", "rest", "return", "rise", "roll", "rub", "sag", "say", "scream", "scrunch", "seem",
     "settle", "shake", "shift", "shoot", "shout", "show", "shrug", "shut", "sigh", "slow",
     "smile", "smirk", "sneer", "soften", "speak", "squeeze", "squint", "stare", "start", "stay",
     "stiffen", "stretch", "suck", "swallow", "sweep", "swing", "talk", "tense", "tighten",
     "tilt", "touch", "tremble", "turn", "twitch", "watch", "widen", "wipe", "wrinkle", "yawn"])
#: Verb forms no suffix rule finds: be, have, do, modals and irregular pasts / participles.
VERB_FORMS: frozenset[str] = frozenset(
    ["is", "are", "was", "were", "be", "been", "being", "am", "has", "have", "had", "does",
     "did", "can", "could", "may", "might", "will", "would", "should", "must", "isn't",
     "aren't", "doesn't", "don't", "didn't", "began", "begun", "bit", "bitten", "came", "drawn",
     "drew", "fell", "fallen", "held", "kept", "rose", "risen", "said", "seen", "shook",
     "shaken", "shot", "shut", "spoke", "spoken", "swung", "went", "gone", "made", "gave",
     "given", "took", "taken", "open"])
_BASE_CUES = frozenset(["to", "not", "they", "we", "you", "i", "can", "could", "may", "might",
                        "will", "would", "should", "must", "does", "do", "did"])


def _verb_form(word: str) -> bool:
    if word in VERB_FORMS:
        return True
    for suffix, cuts in (("ing", ("ing",)), ("ed", ("ed", "d")), ("es", ("es", "s")), ("s", ("s",))):
        if word.endswith(suffix):
            for cut in cuts:
                stem = word[: -len(cut)]
                if stem in VERB_BASES or stem + "e" in VERB_BASES or (
                        len(stem) > 2 and stem[-1] == stem[-2] and stem[:-1] in VERB_BASES):
                    return True
    return False


def has_verb(text: str) -> bool:
    """Whether ``text`` holds a verb (:data:`VERB_BASES`, :data:`VERB_FORMS`): an inflected
    form, or a base form after a modal, "to", "not", a plural pronoun or a plural noun
    ("the lips part")."""
    words = [w.lower().strip("'") for w in _WORD.findall(text)]

    def base_cue(prev: str) -> bool:
        return prev in _BASE_CUES or (prev.endswith("s") and not prev.endswith(("ss", "'s"))
                                      and not _verb_form(prev))

    return any(_verb_form(w) or (w in VERB_BASES and i > 0 and base_cue(words[i - 1]))
               for i, w in enumerate(words))


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
    out = _EMO_ABSENT.sub("", clause)
    # the phrase with the "and" before it first ("..., and a calm face"): once _EMO_NP has
    # removed the phrase itself, the "and" would be left dangling
    out = _EMO_NP.sub("", _EMO_NP_LEADING.sub("", out)) if _EMO_NP.search(out) else out
    out = _EMO_FRAME.sub("", out)
    out = _EMO_PHRASE.sub("", out)
    out = _EMO_WORD.sub("", out)
    out = re.sub(r"\s{2,}", " ", out).strip()
    out = re.sub(r"\s+([,.;:!?])", r"\1", out)
    return _fix_articles(out)


def _refine_clause(clause: str) -> str:
    clause = clause.strip()
    if not clause:
        return clause
    if _INFERENCE_START.match(clause) and not mentions_evidence(clause):
        return ""  # a reading of the face ("indicating fatigue"), emotion word or not
    if not mentions_emotion(clause):
        return clause
    if not mentions_evidence(clause):
        return ""
    clause = _JUDGEMENT_TAIL.sub("", _JUDGEMENT_AND.sub("", clause))
    if not mentions_emotion(clause):
        return clause
    if _JUDGEMENT.search(clause) and not _EMO_NP.search(clause):
        return ""  # "her eyes look sad": a judgement about the person, feature or not
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
        # Written separators survive: punctuation as a comma (a list item's colon as a colon),
        # a space before a connective.
        text += (" " if not sep.strip() else ": " if sep.strip() == ":" else ", ") + clause
    text = text.strip(" ,;:")
    if not text:
        return ""
    changed = len(kept) < len(original) or [c for _, c in kept] != [c for _, c in original]
    if changed and not has_verb(text):
        return ""  # "Face and steady gaze.": what refinement left is not a sentence
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
