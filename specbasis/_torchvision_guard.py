"""Keep ``import torchvision`` (and so ``import timm`` and transformers' vision imports) working
when torchvision's compiled ops cannot load.

Why: the package index only carries CUDA builds of torchvision. Under the CPU build of torch its
``_C`` extension fails to load, and ``torchvision/_meta_registrations.py`` then registers fake
kernels for ``torchvision::nms`` / ``torchvision::qnms`` on operators that were never defined,
raising ``RuntimeError: operator torchvision::nms does not exist``. timm imports torchvision, and
transformers imports it when it is installed, so both break.

The fix is guarded: only when ``torchvision.extension._has_ops()`` is False (the extension really
failed to load) do we define the two missing operator *schemas*. No kernel is defined, so calling
``torchvision.ops.nms`` still fails loudly; nothing this project uses calls it. Where the extension
loads (a CUDA machine with a matching torch) this module does nothing.

It is activated by a ``.pth`` file that ``setup.sh`` writes into the environment's site-packages;
the hook costs one entry in ``sys.meta_path`` and imports nothing until torchvision is imported.
"""
from __future__ import annotations

import importlib.abc
import sys

# The operators torchvision registers with ``torch.library.register_fake`` unconditionally
# (torchvision 0.28, _meta_registrations.py). Schemas copied from torchvision/csrc/ops/nms.cpp.
MISSING_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

_library = None  # keep the torch.library.Library alive: dropping it unregisters the schemas


def define_missing_schemas() -> list[str]:
    """Define the torchvision op schemas that are absent; return the names defined."""
    global _library
    import torch

    defined = []
    for name, schema in MISSING_SCHEMAS.items():
        try:
            torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
            continue  # already there (the extension did load, or we ran before)
        except RuntimeError:
            pass
        if _library is None:
            _library = torch.library.Library("torchvision", "FRAGMENT")
        _library.define(schema)
        defined.append(name)
    return defined


class _Finder(importlib.abc.MetaPathFinder):
    """Runs the guard just before ``torchvision._meta_registrations`` is imported.

    By then ``torchvision.extension`` has tried (and maybe failed) to load the compiled ops.
    """

    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision._meta_registrations":
            extension = sys.modules.get("torchvision.extension")
            if extension is not None and not extension._has_ops():
                define_missing_schemas()
        return None  # never load anything ourselves


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
