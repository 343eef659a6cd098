"""The Ray engine: ``sweep()`` runs an IsoFLOP grid on Ray Tune and fits it.

Importing this package imports Ray; ``import flops_fit`` does not (it loads this lazily).
"""

from flops_fit.ray.sweep import sweep

__all__ = ["sweep"]
