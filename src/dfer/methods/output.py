"""What every method's forward output shares: class probabilities from its ``logits``."""

from __future__ import annotations

import torch


class LogitsOutput:
    """Mixin of a forward output dataclass with a ``logits`` field ``[B, C]``.

    :meth:`probabilities` is the one definition evaluation (``predict_step``), ``dfer predict``
    and ``predict_proba`` share, for every method, so their probabilities are the same numbers.
    """

    logits: torch.Tensor  # declared here for type checkers; each dataclass has it as a field

    def probabilities(self) -> torch.Tensor:
        """Class probabilities ``[B, C]``: softmax over the logits in float32 (bf16 logits of
        a mixed-precision run are widened first)."""
        return torch.softmax(self.logits.float(), dim=-1)
