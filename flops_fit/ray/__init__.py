"""The Ray engine: ``sweep()`` runs an IsoFLOP grid on Ray Tune and fits it; ``tune()``
measures the learning-rate rule a sweep uses.

Importing this package imports Ray; ``import flops_fit`` does not (it loads this lazily).
"""

from flops_fit.ray.backend import sweep, tune

__all__ = ["sweep", "tune"]
