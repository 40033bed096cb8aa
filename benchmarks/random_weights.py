"""Random-weight checkpoints in the public Wav2Lip layout for the benchmark scripts: same size and speed as the
real files, no download. Written with the tests' own writer (tests/ckpt_utils.py), so both use one layout."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def random_public_checkpoint(folder: Path, arch: str) -> str:
    """Path (as str) of a seed-0 random checkpoint of arch ("wav2lip", "syncnet", "disc_qual") in folder."""
    sys.path.insert(0, str(ROOT / "tests"))
    from ckpt_utils import write_public_checkpoint

    return str(write_public_checkpoint(Path(folder) / f"{arch}_random.pth", arch, seed=0))
