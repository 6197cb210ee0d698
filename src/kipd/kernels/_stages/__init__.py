"""Implementations of the full-resolution stage, one module each.

``xla.py`` is the reference (the layer maps of the stage); ``cpu.py`` (a C++ kernel through
XLA's FFI, built by ``cpu_build.py``) and ``pallas.py`` (a Pallas kernel, Triton backend)
each export one factory, ``stage(...)``, that returns the :class:`FusedStage` the backend
supports, its capabilities declared as fields (``pools``, ``on_band``). Which backend runs
is ``make``'s choice (``_make.py``); :data:`FUSED_STAGES` names them.
"""

from kipd.kernels._stages import cpu, pallas
from kipd.kernels._stages.stage import BandStage, FusedStage, StageFactory

FUSED_STAGES: dict[str, StageFactory] = {"cpu": cpu.stage, "pallas": pallas.stage}
"""The fused backends by ``make``'s ``implementation`` name (``"xla"`` is none of them:
it runs the layer maps themselves)."""

__all__ = ["FUSED_STAGES", "BandStage", "FusedStage", "StageFactory"]
