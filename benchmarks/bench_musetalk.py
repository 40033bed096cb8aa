"""MuseTalk 1.5 throughput per stage and peak memory, with the real networks' configs and random weights.

    python benchmarks/bench_musetalk.py VIDEO AUDIO [--seconds 2] [--detector dlib] [--device cpu]
                                        [--precision auto] [--batch-size 8]

The UNet (850 M parameters), VAE (84 M) and whisper-tiny encoder are built from the configs in
../shared/reference/musetalk/musetalk_arch.json (`--arch` for another copy) with the libraries' random
initialisation: same size and arithmetic as the published files, so the same speed, no download. Prints the
dub stages (frames/s over the frames generated) and the generator's three networks timed on one batch.
Not a test: it prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCH = ROOT.parent / "shared" / "reference" / "musetalk" / "musetalk_arch.json"


def real_generator(arch_path: Path, device: str, precision: str, batch: int):
    """A MuseTalkGenerator over randomly initialised networks of the real configurations."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import WhisperConfig, WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from lipsync_cli.config import MuseTalkConfig
    from lipsync_cli.device import pick_device, pick_precision
    from lipsync_cli.generators.musetalk.files import MuseTalkNetworks
    from lipsync_cli.generators.musetalk.generator import MuseTalkGenerator, MuseTalkModel

    real = json.loads(arch_path.read_text())["real"]
    dev = pick_device(device)
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(real["unet"]["config"])
    vae = AutoencoderKL.from_config(dict(real["vae"]["config"], scaling_factor=0.18215))
    encoder = WhisperEncoder(WhisperConfig(**real["whisper_encoder"]["config"]))
    nets = MuseTalkNetworks(unet.to(dev).eval(), vae.to(dev).eval(), encoder.to(dev).eval(),
                            WhisperFeatureExtractor(), 0.18215)
    return MuseTalkGenerator(model=MuseTalkModel(nets, MuseTalkConfig()), device=dev,
                             precision=pick_precision(precision, dev), batch_size=batch)


def network_rates(gen, batch: int) -> dict:
    """frames/s of VAE encode (masked + reference), UNet and VAE decode on one batch of random crops."""
    import numpy as np
    import torch

    from lipsync_cli.device import autocast

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (batch, 256, 256, 3), dtype=np.uint8)
    contexts = torch.from_numpy(rng.standard_normal((batch, 50, 384)).astype(np.float32))
    rates = {}
    with torch.inference_mode(), autocast(gen.device, gen.precision):
        start = time.perf_counter()
        latents = gen.latents(crops)
        rates["vae encode (x2)"] = batch / (time.perf_counter() - start)
        start = time.perf_counter()
        out = gen.unet(latents, contexts.to(gen.device))
        rates["unet"] = batch / (time.perf_counter() - start)
        start = time.perf_counter()
        gen.decode(out)
        rates["vae decode"] = batch / (time.perf_counter() - start)
    return rates


def trimmed(audio: str, seconds: float, folder: Path) -> Path:
    from lipsync_cli.media import ffmpeg_exe

    out = folder / "audio.wav"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", audio, "-t", str(seconds), str(out)], check=True)
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main() -> None:
    import torch

    from lipsync_cli.config import DubConfig, FaceConfig
    from lipsync_cli.pipeline import dub

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("video")
    p.add_argument("audio")
    p.add_argument("--seconds", type=float, default=2.0, help="dub only this much of AUDIO")
    p.add_argument("--detector", default="dlib")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--arch", type=Path, default=ARCH, help="musetalk_arch.json with the real configs")
    args = p.parse_args()

    start = time.perf_counter()
    gen = real_generator(args.arch, args.device, args.precision, args.batch_size)
    build = time.perf_counter() - start
    rates = network_rates(gen, args.batch_size)
    cfg = DubConfig(model="musetalk", faces=FaceConfig(detector=args.detector), device=args.device,
                    precision=args.precision, batch_size=args.batch_size, quiet=True, force=True)
    with tempfile.TemporaryDirectory() as tmp:
        audio = trimmed(args.audio, args.seconds, Path(tmp))
        start = time.perf_counter()
        result = dub(Path(args.video), audio, Path(tmp) / "out.mp4", cfg, generator=gen)
        total = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"MuseTalk 1.5, real-config networks, random weights | {cpu_model()} | torch {torch.__version__} "
          f"threads {torch.get_num_threads()} | device {gen.device} precision {gen.precision} batch {gen.batch_size}")
    print(f"{result.frames} frames ({result.frames_edited} edited), {args.seconds:g} s of audio; "
          f"networks built in {build:.1f} s")
    print(f"{'stage':<18}{'seconds':>10}{'frames/s':>10}")
    for stage, seconds in result.seconds.items():
        print(f"{stage:<18}{seconds:>10.2f}{result.frames / seconds if seconds else float('inf'):>10.2f}")
    print(f"{'dub total':<18}{total:>10.2f}{result.frames / total:>10.2f}")
    for name, rate in rates.items():
        print(f"{name:<18}{'':>10}{rate:>10.2f}   (one batch of {args.batch_size})")
    print(f"peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
