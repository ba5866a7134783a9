"""Build a tiny, randomly initialised Qwen2.5-VL checkpoint on disk, with no hub access.

No model weights can be downloaded on the machines this project is tested on, yet the vLLM
backend must be exercised for real (engine start, multimodal processing, batched generation).
This module writes a complete model directory -- config, random safetensors weights, a
byte-level BPE tokenizer with Qwen's special tokens, an image processor and a chat template --
small enough to run on a CPU in seconds. Its text is gibberish by design; the point is the
plumbing. Needs ``transformers`` and ``torch``, i.e. it runs inside the vLLM environment.
"""

from __future__ import annotations

import json
from pathlib import Path

#: Qwen2-VL's special tokens, in the order they get ids after the 256 byte tokens.
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>",
)

#: A minimal chat template in Qwen's format: one vision block per image or video item.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] in ('image', 'image_url') %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] in ('video', 'video_url') %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _byte_vocab() -> dict[str, int]:
    """GPT-2's byte-to-printable-character table: one token per byte, no merges needed."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1))
                 + list(range(ord("\u00ae"), ord("\u00ff") + 1)))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return {c: i for i, c in enumerate(chars)}


def build_tiny_qwen2_5_vl(out_dir: str | Path, seed: int = 0, image_side: int = 112) -> Path:
    """Write a tiny random Qwen2.5-VL model directory to ``out_dir`` and return it.

    ``image_side`` bounds the processor's pixels per frame (``image_side**2``) so that a
    224-px face crop becomes a handful of vision tokens and the CPU engine stays fast.
    """
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2Tokenizer,
    )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = _byte_vocab()
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token="<|endoftext|>",
                               eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS[1:])})
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}

    head_dim = 64
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": 512, "hidden_size": 128, "intermediate_size": 256,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "head_dim": head_dim, "max_position_embeddings": 4096, "tie_word_embeddings": False,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": [8, 12, 12]},
            "eos_token_id": ids["<|im_end|>"], "bos_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
            "out_hidden_size": 128, "patch_size": 14, "spatial_merge_size": 2,
            "temporal_patch_size": 2, "window_size": 56, "fullatt_block_indexes": [1],
            "in_channels": 3,
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    # Random weights answer with whatever token scores highest -- often a newline, which
    # strips to an empty caption. Zeroing every output row but lowercase letters, space and
    # full stop makes greedy decoding emit (meaningless) words, so the pipeline downstream of
    # the engine (refinement, Parquet rows) is exercised too.
    keep = [vocab[c] for c in "abcdefghijklmnopqrstuvwxyz."] + [vocab[chr(288)]]  # 288: space
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        mask = torch.zeros(head.shape[0], dtype=torch.bool)
        mask[keep] = True
        head[~mask] = 0.0
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    pixels = image_side * image_side
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=pixels // 4, max_pixels=pixels, patch_size=14, temporal_patch_size=2,
        merge_size=2,
    )
    image_processor.save_pretrained(out)
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    (out / "dfer_tiny_model.json").write_text(json.dumps({"seed": seed, "image_side": image_side}))
    return out
