"""Multi-process pretraining: ``torchrun --nproc_per_node N -m training --config run.json``."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.loop import PretrainConfig, pretrain


def main() -> None:
    """Pretrain with the ``PretrainConfig`` JSON given as ``--config``."""
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument(
        "--config", required=True, type=Path, help="a PretrainConfig as JSON (see config.json of a run)"
    )
    args = parser.parse_args()
    pretrain(PretrainConfig.from_json(args.config.read_text()))


if __name__ == "__main__":
    main()
