"""Run an IsoFLOP sweep on a Ray cluster (or locally) and print the compute-optimal table.

The driver script for ``ray submit`` and ``ray job submit`` (see cluster/README.md). It takes
every flag of ``flops-fit sweep`` plus ``--smoke-test``::

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python examples/tinystories_sweep.py --preset tinystories-gpu --storage-path /mnt/shared/flops_fit
    ray submit cluster/aws.yaml examples/tinystories_sweep.py -- --address auto --preset tinystories-gpu
    python examples/tinystories_sweep.py --smoke-test        # seconds, on a laptop

``ray.init`` attaches to the cluster named by ``--address`` or ``$RAY_ADDRESS`` (which
``ray job submit`` sets); without either it starts Ray in-process.
"""

from __future__ import annotations

import argparse
import sys

from flops_fit.cli import add_config_flags, config_from_args
from flops_fit.planning.grid import PlanError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_config_flags(parser)
    parser.add_argument("--smoke-test", action="store_true", help="the smallest sweep that exercises everything")
    args = parser.parse_args(argv)
    if args.smoke_test:
        args.preset = "smoke"
    try:
        cfg = config_from_args(args)
    except PlanError as exc:
        print(f"tinystories_sweep: error: {exc}", file=sys.stderr)
        return 2

    from flops_fit.ray import sweep

    result = sweep(cfg)
    ok = int((result.results["status"] == "ok").sum())
    print(f"{ok}/{len(result.results)} trials ok; outputs in {cfg.storage_path}/{cfg.name}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
