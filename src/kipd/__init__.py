"""kipd: dataset distillation with the exact kernels of infinitely wide networks.

The subpackages follow the data path of the design: ``kipd.data`` (datasets and
preprocessing), ``kipd.kernels`` (exact NNGP/NTK kernels), ``kipd.distill`` (KRR, KIP,
Label Solve).
"""

__version__ = "0.1.0"
