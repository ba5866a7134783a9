"""The DFER methods, each an ``nn.Module`` with its config and losses, behind one registry.

``fineclipper`` (FineCLIPER, ACM MM 2024, the project's reference), ``dferclip`` (DFER-CLIP,
BMVC 2023), ``cliper`` (CLIPER, ICME 2024, video version), ``s2d`` (S2D, TAFFC 2024) and
``a3lign`` (A3lign-DFER) are the model cores; :mod:`dfer.methods.registry` selects one by a
run's ``model.method`` and :mod:`dfer.methods.specs` holds each one's registration (what it
reads, its sampler, augmentation, optimiser groups and stages, checkpoint policy). Shared parts
(backbone loading, the text encoder taking embeddings, adapters, the temporal transformer,
pixel handling) live in :mod:`dfer.model`. What each method is, what it needs and where it
departs from its paper or public code: ``docs/methods.md``.

Nothing is imported here: the registry is read while the Snakefile is parsed (no torch).
"""
