"""Decode only the frames a clip's sample needs: FFmpeg skips the unwanted non-reference ones.

A forward pass must decode every frame up to the last wanted one that a later frame is
predicted from, but not the non-reference frames (x264's default B-frames: about half of the
frames), which nothing else needs. So for each packet whose frame is not wanted, the decoder is
told to skip it if it is a non-reference frame (``skip_frame = NONREF``); reference frames are
decoded regardless. In one run of ``benchmarks/bench_decode.py`` this made the decode stage
1.24x faster on 10 s 640x480 x264 clips (16 of 300 frames wanted) and 1.02x on the short
demo clips (16 of ~30 wanted).

Which packet holds which frame comes from the presentation order of their timestamps, read by
one demux pass (no decoding) before the decode pass. That is exact only when the timestamps
say it unambiguously, so ``decode_skipping`` returns None, and the caller decodes every frame
as before, whenever anything is off: a packet without a timestamp, two with the same one, a
packet count other than the header's frame count, a container that cannot seek back to its
start, a decoded frame whose timestamp is not a packet's, a wanted frame that never came, or
any decoding error (the plain pass then reports it as before). The frames it returns are the
same pixels the plain pass gives (``tests/test_decode.py`` checks this).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np


class _NotExact(Exception):
    """The timestamps do not tie decoded frames to frame indices unambiguously."""


def presentation_ranks(container, stream) -> dict[int, int] | None:  # noqa: ANN001 - av types
    """Frame index (presentation order) of each packet's timestamp, from one demux pass; None
    when a packet lacks a timestamp or two share one. Packets the demuxer marks for discard
    (cut by an edit list) hold no frame of the clip and are left out, as the decoder drops
    their frames."""
    stamps: list[int] = []
    for packet in container.demux(stream):
        if packet.size <= 0 or packet.is_discard:
            continue
        if packet.pts is None:
            return None
        stamps.append(int(packet.pts))
    if len(set(stamps)) != len(stamps):
        return None
    return {pts: i for i, pts in enumerate(sorted(stamps))}


def decode_skipping(
    container,  # noqa: ANN001 - an av InputContainer, freshly opened, decoder threads set
    indices: np.ndarray,
    expected_frames: int,
    convert: Callable[[object], np.ndarray],
) -> tuple[dict[int, np.ndarray], int] | None:
    """``{index: convert(frame)}`` of the wanted ``indices`` and the number of frames the
    decoder produced, skipping unwanted non-reference frames; None when that cannot be done
    exactly (module doc), and the container has then been read through.

    ``expected_frames`` is the header's frame count, the count ``indices`` were sampled over.
    """
    import av

    stream = container.streams.video[0]
    try:
        ranks = presentation_ranks(container, stream)
        if ranks is None or len(ranks) != expected_frames:
            return None
        container.seek(0)
        return _decode_pass(container, stream, ranks, {int(i) for i in indices}, convert)
    except (av.error.FFmpegError, ValueError, OSError, _NotExact):
        return None


def _decode_pass(container, stream, ranks: dict[int, int], wanted: set[int],  # noqa: ANN001
                 convert: Callable[[object], np.ndarray]) -> tuple[dict[int, np.ndarray], int] | None:
    codec = stream.codec_context
    out: dict[int, np.ndarray] = {}
    produced = 0

    def take(frames: Iterable) -> None:  # noqa: ANN001 - av VideoFrames
        nonlocal produced
        for frame in frames:
            produced += 1
            index = ranks.get(frame.pts) if frame.pts is not None else None
            if index is None:
                raise _NotExact
            if index in wanted:
                out[index] = convert(frame)

    for packet in container.demux(stream):
        if packet.size > 0 and packet.pts is not None:
            index = ranks.get(int(packet.pts))
            codec.skip_frame = "DEFAULT" if index is None or index in wanted else "NONREF"
        else:  # the flush packet at the end: return the frames the decoder still holds
            codec.skip_frame = "DEFAULT"
        take(codec.decode(packet))
        if len(out) == len(wanted):
            codec.skip_frame = "DEFAULT"
            return out, produced
    return None
