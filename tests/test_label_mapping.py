"""Zero-shot label mapping: which text is scored for each class, and when a run is zero-shot."""

from __future__ import annotations

import pytest

from dfer.train.label_mapping import is_zero_shot, label_prompts_for

DFEW = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]


def test_without_prompts_each_label_is_its_own_prompt() -> None:
    assert label_prompts_for(DFEW, None) == DFEW
    assert label_prompts_for(DFEW, {}) == DFEW
    assert label_prompts_for((), {"neutral": "calm"}) == []


def test_prompts_reword_only_their_labels_in_the_dataset_order() -> None:
    prompts = {"neutral": "a calm face", "fear": "a frightened face", "contempt": "a sneer"}
    assert label_prompts_for(DFEW, prompts) == [
        "happiness", "sadness", "a calm face", "anger", "surprise", "disgust",
        "a frightened face",
    ]  # "contempt" is not a DFEW class: ignored
    # the order follows the evaluated dataset's labels, whatever order the prompts are in
    assert label_prompts_for(["fear", "neutral", "joy"], prompts) == [
        "a frightened face", "a calm face", "joy"]


def test_prompt_values_become_text() -> None:
    assert label_prompts_for(["a", "b"], {"a": 7}) == ["7", "b"]
    assert all(type(p) is str for p in label_prompts_for(["a", "b"], {"a": 7}))


def test_zero_shot_when_dataset_or_classes_differ() -> None:
    meta = {"dataset": "mafw", "labels": ["anger", "disgust"]}
    assert is_zero_shot(meta, "mafw", ["anger", "disgust"]) is False
    assert is_zero_shot(meta, "mafw", ("anger", "disgust")) is False  # tuples compare as lists
    assert is_zero_shot({"dataset": "mafw", "labels": ("anger", "disgust")}, "mafw",
                        ["anger", "disgust"]) is False
    assert is_zero_shot(meta, "dfew", ["anger", "disgust"]) is True  # other dataset, same classes
    assert is_zero_shot(meta, "mafw", ["disgust", "anger"]) is True  # reordered classes
    assert is_zero_shot(meta, "mafw", ["anger", "disgusted"]) is True  # renamed class
    assert is_zero_shot(meta, "mafw", ["anger"]) is True  # fewer classes


@pytest.mark.parametrize("meta, expected", [
    ({"labels": ["a"]}, True),            # no dataset recorded: not the same dataset
    ({"dataset": "d"}, True),             # no labels recorded: [] differs from ["a"]
    ({"dataset": "d", "labels": []}, True),
    ({}, True),
    ({"dataset": "d", "labels": ["a"]}, False),
])
def test_zero_shot_with_incomplete_metadata(meta: dict, expected: bool) -> None:
    assert is_zero_shot(meta, "d", ["a"]) is expected


def test_checkpoint_without_labels_on_a_dataset_without_classes_is_not_zero_shot() -> None:
    assert is_zero_shot({"dataset": "d"}, "d", []) is False
