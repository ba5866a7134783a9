"""Test fixtures that tests, benchmarks and scripts/check_vllm_env.py share (not the library).

``dataset``: a synthetic dataset in the exact artifact layout; ``videos``: small synthetic
videos and frame folders; ``tiny_qwen``: a tiny random Qwen2.5-VL checkpoint; ``fake_conda/``:
a stand-in ``conda`` for the --use-conda test; ``golden``: readers of the golden fixtures under
``tests/fixtures/golden/`` (made once from the public DFER-CLIP, CLIPER and S2D code). pytest puts ``tests/`` on ``sys.path`` (the
test files are not a package), so tests import ``support.dataset``; benchmarks and scripts add
``tests/`` themselves.
"""
