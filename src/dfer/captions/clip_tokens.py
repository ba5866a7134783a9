"""How many captions CLIP's text encoder cuts: its context holds 77 tokens, start and end included.

A caption longer than that loses its tail silently in ``tokenizer(...)`` (open_clip truncates),
so the caption branch reads less than the table holds. The captions stage counts such captions
per shard (``captions_cut_at_77`` in its provenance) and the report sums them
(:func:`dfer.report.stage_stats.stage_stats`). Counting needs open_clip's BPE tokenizer, which
the separate vLLM environment does not have: there the count is ``None`` and the report counts
from the shard's captions instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

#: CLIP's text context: 77 token positions, the start and end tokens included.
CLIP_CONTEXT = 77


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def tokenizer_available() -> bool:
    """Whether open_clip's tokenizer can be imported here (not in the vLLM environment)."""
    try:
        _tokenizer()
    except ImportError:
        return False
    return True


def clip_token_count(text: str) -> int:
    """Token positions ``text`` takes in CLIP's context: its BPE tokens plus start and end."""
    return len(_tokenizer().encode(str(text))) + 2


def captions_cut(texts: Iterable[str], context: int = CLIP_CONTEXT) -> int | None:
    """How many of ``texts`` are longer than ``context`` token positions (and so cut by the
    text encoder); None where open_clip's tokenizer cannot be imported."""
    if not tokenizer_available():
        return None
    return sum(clip_token_count(t) > context for t in texts)
