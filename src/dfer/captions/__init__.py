"""Captions: one text per clip describing its facial movements (the paper's fine-grained text).

Modules: ``config`` (the ``captions`` config section, prompt hash, vLLM interpreter),
``prompt`` / ``refine`` (the question asked and the answer cleaned of emotion words),
``base`` (the :class:`~dfer.captions.base.Describer` protocol, clip input, frame sampling),
one module per backend (``offline``, ``openai_client``, ``vllm_backend``), ``api`` (clips in
memory -> captions rows or failures, through the configured backend) and ``shard`` (one shard
on the shared runner).

Nothing is imported here on purpose: the workflow imports ``dfer.captions.config`` while it
parses, and the vLLM environment imports this package with only its own dependencies, so the
package itself must stay free of backend imports.
"""
