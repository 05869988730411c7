"""Say plainly when Snakemake is given a config file that is not one.

Why: Snakemake's `--configfile` takes every word after it as another config file, so
``snakemake --configfile mine.yaml results/fig2.pdf`` reads the PDF as a config and stops with a raw
``UnicodeDecodeError`` from its JSON reader (or a YAML error for a text file that is not a mapping), naming
neither the file nor the cause. Snakemake reads config files before it parses the Snakefile, so the workflow
itself cannot catch this.

What: once ``snakemake.common.configfile`` is imported, its ``_load_configfile`` is wrapped: a file that cannot be
decoded as UTF-8 text, text that is not a YAML or JSON mapping, or a file that does not exist, becomes Snakemake's
own ``WorkflowError`` naming the file, saying what is wrong, and how to write the command (targets before ``--configfile``, or ``--configfile=FILE``). Every
other case, a good config included, is Snakemake's unchanged.

It is activated by a ``.pth`` file that ``setup.sh`` writes into the environment's site-packages, as the
torchvision guard is; the hook costs one entry in ``sys.meta_path`` and imports nothing until Snakemake does.
"""
from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import sys

MODULE = "snakemake.common.configfile"


def advice(path) -> str:
    return (f"{path} is not a config file (not YAML or JSON text). Snakemake's --configfile takes every word after "
            f"it as another config file: a target written after it (e.g. `--configfile mine.yaml "
            f"results/fig2.pdf`) is read as a config. Write the targets first (`snakemake results/fig2.pdf "
            f"--configfile mine.yaml`) or use `--configfile=mine.yaml`.")


def wrap(module) -> None:
    """Wrap the module's readers (once): a config file that is not text, or text that is not a mapping (a CSV
    target, say), is said plainly, naming the file."""
    original, checked = module._load_configfile, module.load_configfile
    if getattr(original, "_specbasis_guard", False):
        return
    from snakemake_interface_common.exceptions import WorkflowError

    @functools.wraps(original)
    def load(configpath_or_obj, filetype="Config"):
        try:
            return original(configpath_or_obj, filetype)
        except UnicodeDecodeError:
            raise WorkflowError(advice(configpath_or_obj)) from None
        except FileNotFoundError:
            raise WorkflowError(f"config file {configpath_or_obj} does not exist. {advice('It').split('. ', 1)[1]}"
                                ) from None

    @functools.wraps(checked)
    def load_checked(configpath):
        try:
            return checked(configpath)
        except WorkflowError as e:
            if "keys at top level" not in str(e) and "not valid JSON or YAML" not in str(e):
                raise
            raise WorkflowError(advice(configpath)) from None

    load._specbasis_guard = True
    module._load_configfile, module.load_configfile = load, load_checked


class _Loader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        wrap(module)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds snakemake.common.configfile as usual, and wraps it once it has run."""

    def find_spec(self, fullname, path, target=None):
        if fullname != MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def install() -> None:
    if MODULE in sys.modules:
        wrap(sys.modules[MODULE])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
