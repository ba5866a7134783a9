"""One module per DFER method, each a standalone ``nn.Module`` with its config and losses.

``dferclip`` (DFER-CLIP, BMVC 2023), ``cliper`` (CLIPER, ICME 2024, video version) and ``s2d``
(S2D, TAFFC 2024). Shared parts (backbone loading, the text encoder taking embeddings, the
temporal transformer, pixel handling) live in :mod:`dfer.model`. What each method is, what it
needs and where it departs from its public code: ``docs/methods.md``.
"""
