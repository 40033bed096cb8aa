"""Peak RSS while loading MuseTalk's UNet: built then loaded (two copies) vs built on the meta device and loaded
from a memory-mapped file (one copy, lipsync_cli.generators.musetalk.files.load_unet).

    python benchmarks/bench_musetalk_load.py [--arch ../shared/reference/musetalk/musetalk_arch.json]

Writes a random-weight UNet of the real configuration (850 M parameters, ~3.4 GB, like the published unet.pth)
to a temp folder, then loads it each way in a fresh process and prints that process's peak RSS, before and after
the load (the imports alone hold a few hundred MB). Needs ~8 GB of free memory and ~3.5 GB of disk.
Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCH = ROOT.parent / "shared" / "reference" / "musetalk" / "musetalk_arch.json"

WRITE = """
import json, sys, torch
from diffusers import UNet2DConditionModel
torch.manual_seed(0)
unet = UNet2DConditionModel.from_config(json.load(open(sys.argv[1])))
torch.save(unet.state_dict(), sys.argv[2])
print(sum(p.numel() for p in unet.parameters()))
"""

# The load as it was before (build with random initialisation, read the whole file, copy it in) and as it is now.
LOAD = """
import json, resource, sys
from pathlib import Path
import torch
from diffusers import UNet2DConditionModel
from lipsync_cli.generators.musetalk.files import MuseTalkFiles, load_unet
config, weights, way = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if way == "build+load":
    unet = UNet2DConditionModel.from_config(json.loads(config.read_text()))
    unet.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
else:
    unet = load_unet(MuseTalkFiles(weights, config, config, config, config, config), UNet2DConditionModel)
x = unet(torch.zeros(1, 8, 32, 32), torch.zeros(1, dtype=torch.long), torch.zeros(1, 50, 384)).sample
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"imports_mb": before, "peak_mb": peak, "finite": bool(torch.isfinite(x).all())}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=Path, default=ARCH)
    args = parser.parse_args()
    config = json.loads(args.arch.read_text())["real"]["unet"]["config"]
    with tempfile.TemporaryDirectory(prefix="lipsync-unet-") as tmp:
        cfg, weights = Path(tmp) / "musetalk.json", Path(tmp) / "unet.pth"
        cfg.write_text(json.dumps(config))
        params = int(subprocess.run([sys.executable, "-c", WRITE, str(cfg), str(weights)], check=True,
                                    capture_output=True, text=True).stdout.split()[-1])
        print(f"random UNet: {params / 1e6:.0f} M parameters, file {weights.stat().st_size / 1e9:.2f} GB")
        print(f"{'load':<24}{'imports MB':>12}{'peak MB':>10}{'load adds MB':>14}")
        for way in ("build+load", "meta+mmap"):
            out = subprocess.run([sys.executable, "-c", LOAD, str(cfg), str(weights), way], check=True,
                                 capture_output=True, text=True, cwd=ROOT).stdout
            r = json.loads(out.strip().splitlines()[-1])
            assert r["finite"], way
            print(f"{way:<24}{r['imports_mb']:>12.0f}{r['peak_mb']:>10.0f}{r['peak_mb'] - r['imports_mb']:>14.0f}")


if __name__ == "__main__":
    sys.exit(main())
