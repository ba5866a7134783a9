"""Package names imported on first use.

The Snakefile imports the config modules of several packages (``dfer.landmarks.config``,
``dfer.parsing.config``, ``dfer.model.config``) while it is parsed, and every cluster job parses
it again; a package's ``__init__`` that imported its whole public API would make each of them
pay for torch, dlib or cv2 there. A package hands its public names to :func:`lazy_exports`
instead, and each is imported from its defining module when first used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package`` whose public names are ``exports``
    (public name -> the module that defines it)."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__, sorted(exports)
