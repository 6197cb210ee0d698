"""kipd: dataset distillation with the exact kernels of infinitely wide networks.

The subpackages follow the data path of the design (docs/design.md): ``kipd.data``
(datasets and preprocessing), ``kipd.kernels`` (exact NNGP/NTK kernels), ``kipd.compute``
(the block plan and its executors), ``kipd.distill`` (KRR, KIP, Label Solve),
``kipd.runs`` (durable runs, their directories and evaluation),
``kipd.transfer`` (finite networks), ``kipd.analysis`` (what KIP learned), and
``kipd.files`` (durable files). ``import kipd`` loads none of them: each is imported on
first access (``kipd.kernels.make("fc1")`` works), so ``kipd --version`` stays fast.
"""

import importlib
from typing import Any

__version__ = "0.8.0"

_SUBPACKAGES = ("analysis", "compute", "data", "distill", "files", "kernels", "runs", "transfer")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"kipd.{name}")
    raise AttributeError(f"module 'kipd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBPACKAGES])
