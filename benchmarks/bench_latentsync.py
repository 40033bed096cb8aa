"""LatentSync 1.6 / 1.5 speed per stage and peak memory, with the real networks' sizes and random weights.

    python benchmarks/bench_latentsync.py steps [--resolution 256 512] [--frames 16] [--device cpu] [--precision fp32 ...]
    python benchmarks/bench_latentsync.py stream CHECKPOINTS VIDEO AUDIO [--seconds 6 60]
    python benchmarks/bench_latentsync.py load

`steps`: the UNet (1.27 B parameters), VAE (84 M) and whisper-tiny encoder are built from the published
configs (lipsync_cli.generators.latentsync.files.published_config, ../shared/reference/latentsync) with the
libraries' random initialisation: same size and arithmetic as the published files, so the same speed and no
download. Times ONE denoising step of one window (both guidance halves in one batch) at each resolution, the
VAE encode (masked + reference) and decode of the window, and extrapolates to a whole window at upstream's 20
steps. On a CPU one 16-frame window at 512 px takes minutes per step: `--frames 4` times a quarter window
and scales by frames (the UNet's cost is linear in frames apart from the 16-frame temporal attention).
Several --precision values are timed on the same networks (built once per resolution); on CUDA a first,
untimed guided step loads the kernels and lets cuDNN pick its algorithms.

`stream`: dubs the first 6 s and 60 s of AUDIO with a (tiny) checkpoints folder, each in a fresh process, and
prints their peak RSS: streaming keeps it flat in length.

`load`: writes a random UNet of the real size in upstream's layout (latentsync_unet.pt, 1.27 B parameters, ~5 GB:
needs ~5 GB of disk and ~11 GB of memory) and loads it in a fresh process the way it was loaded before (built with
random initialisation, the whole file read, copied in) and the way files.load_unet does (meta device + memory
map), each reading every weight once, and prints each process's peak RSS. Not a test: it prints tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def real_networks(device: str, resolution: int):
    import torch
    from diffusers import AutoencoderKL
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from lipsync_cli.generators.latentsync import files, unet

    torch.manual_seed(0)
    dims = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6, n_audio_layer=4)
    vae_cfg = dict(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                   up_block_types=["UpDecoderBlock2D"] * 4, latent_channels=4, layers_per_block=2,
                   norm_num_groups=32, sample_size=256, scaling_factor=0.18215)
    mask = files.read_mask(ROOT.parent / "shared" / "reference" / "latentsync" / "mask.png")
    with torch.device(device):  # initialised where they run: 1.27 B random numbers are slow to make on a CPU
        return files.LatentSyncNetworks(unet.build(files.published_config(), device).eval(),
                                        AutoencoderKL.from_config(vae_cfg).eval(),
                                        WhisperEncoder(files.whisper_encoder_config(dims)).eval(), mask, resolution)


def time_window(nets, frames: int, device: str, precision: str) -> dict:
    """Seconds for one window's VAE encode, one guided UNet step, the decode; frames/s of whisper. On CUDA the
    window runs twice and the second is timed: kernel loading and cuDNN's algorithm search are not its cost."""
    import numpy as np
    import torch

    from lipsync_cli.config import LatentSyncConfig
    from lipsync_cli.generators.latentsync import audio, paste, sampler
    from lipsync_cli.generators.latentsync.generator import LatentSyncGenerator, LatentSyncModel
    from lipsync_cli.device import autocast

    gen = LatentSyncGenerator(model=LatentSyncModel(nets), device=device, precision=precision, batch_size=frames,
                              cfg=LatentSyncConfig(), mask=paste.model_mask(nets.mask, nets.resolution))
    res, h = nets.resolution, nets.resolution // 8
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (frames, res, res, 3), dtype=np.uint8)
    gen.rng = torch.Generator().manual_seed(0)

    def clock() -> float:
        if device.startswith("cuda"):  # CUDA runs asynchronously: wait for the queued work before reading the clock
            torch.cuda.synchronize()
        return time.perf_counter()

    def once() -> dict:
        out = {}
        with torch.inference_mode(), autocast(device, precision):
            start = clock()
            pix = paste.pixels(crops)
            lat = gen._encode(torch.cat([paste.masked_pixels(pix, gen.mask).float(), pix]),
                              sampler.draw_eps(gen.rng, 2 * frames, h))
            out["vae encode (x2)"] = clock() - start
            mask = torch.from_numpy(paste.latent_mask(gen.mask)).to(device)[None, None, None].expand(1, 1, frames, h, h)
            ctx = torch.from_numpy(rng.standard_normal((frames, 50, 384)).astype(np.float32)).to(device)
            cond = sampler.Conditioning(mask, lat[:frames].transpose(0, 1)[None], lat[frames:].transpose(0, 1)[None],
                                        ctx)
            latents = torch.randn(1, 4, frames, h, h, device=device)
            start = clock()
            sampler.predict_noise(nets.unet, latents, torch.tensor(951), cond, guidance=1.5)
            out["unet step (cfg)"] = clock() - start
            start = clock()
            sampler.decode(nets.vae, latents, 4)
            out["vae decode"] = clock() - start
        speech = rng.standard_normal(16000 * 10).astype(np.float32) * 0.1
        start = clock()
        audio.contexts(speech, np.arange(250) / 25, nets.encoder)
        out["whisper (10 s)"] = clock() - start
        return out

    if device.startswith("cuda"):
        once()
        torch.cuda.reset_peak_memory_stats()
    return once()


def steps_mode(args) -> None:
    import torch

    from lipsync_cli.device import pick_device, pick_precision

    device = pick_device(args.device)
    precisions = [pick_precision(p, device) for p in args.precision]
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {device}, frames per window {args.frames}")
    for res in args.resolution:
        nets = real_networks(device, res)
        for precision in precisions:
            t = time_window(nets, args.frames, device, precision)
            scale = 16 / args.frames
            window_s = (t["vae encode (x2)"] + 20 * t["unet step (cfg)"] + t["vae decode"]) * scale
            print(f"\n{res} px ({'1.6' if res == 512 else '1.5'}), {precision}:")
            for name, sec in t.items():
                n = 250 if name.startswith("whisper") else args.frames
                print(f"  {name:18s} {sec:8.2f} s   {n / sec:8.3f} frames/s")
            print(f"  one 16-frame window at 20 steps with guidance: ~{window_s:.0f} s "
                  f"({window_s / 16 * 25:.0f} s per output second at 25 fps); peak RSS {peak_rss_mb():.0f} MB"
                  + (f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
                     if device.startswith("cuda") else ""))
        del nets


def stream_mode(args) -> None:
    for seconds in args.seconds:
        with tempfile.TemporaryDirectory() as tmp:
            audio = Path(tmp) / "a.wav"
            from lipsync_cli.media import ffmpeg_exe

            subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "-1", "-i", args.audio, "-t",
                            str(seconds), str(audio)], check=True)
            code = ("import resource, sys, time; from lipsync_cli.cli import main; t = time.time()\n"
                    "try: main()\nexcept SystemExit: pass\n"
                    "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.time() - t)")
            cmd = [sys.executable, "-c", code, "dub", args.video, str(audio), "-o", str(Path(tmp) / "o.mp4"),
                   "--model", args.checkpoints, "--detector", "dlib", "--device", "cpu", "--steps", "1",
                   "--guidance", "1", "-q"]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RSS")]
            print(f"{seconds:5.0f} s of audio: peak RSS {line[0].split()[1] if line else '?'} MB, "
                  f"{line[0].split()[2] if line else '?'} s" + ("" if line else f" ({proc.stderr.strip()[-200:]})"))


# Writing a real-size random latentsync_unet.pt in upstream's layout ({"state_dict": its 1246 names}).
WRITE_UNET = """
import json, sys, torch
sys.path.insert(0, sys.argv[2])
from latentsync_utils import unet_state
arch = json.load(open(sys.argv[3]))
torch.save({"state_dict": unet_state({"unet": arch["real"]["unet"]}), "global_step": 0}, sys.argv[1])
"""

# The load as it was before (built with random initialisation, the whole file read, copied in) and as it is now.
LOAD_UNET = """
import json, resource, sys
from pathlib import Path
import torch
from lipsync_cli.generators.latentsync import files, unet as unet_mod
weights, way = Path(sys.argv[1]), sys.argv[2]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if way == "build+load":
    net = unet_mod.build(files.published_config())
    state = torch.load(weights, map_location="cpu", weights_only=True)["state_dict"]
    net.load_state_dict(unet_mod.remap_state(state), strict=True)
else:
    net = files.load_unet(weights, files.published_config())
total = sum(float(p.double().sum()) for p in net.parameters())  # every weight read once
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"imports_mb": before, "peak_mb": peak, "finite": total == total}))
"""


def load_mode(args) -> None:
    arch = ROOT.parent / "shared" / "reference" / "latentsync" / "latentsync_arch.json"
    with tempfile.TemporaryDirectory(prefix="lipsync-latentsync-unet-") as tmp:
        weights = Path(tmp) / "latentsync_unet.pt"
        subprocess.run([sys.executable, "-c", WRITE_UNET, str(weights), str(ROOT / "tests"), str(arch)], check=True,
                       cwd=ROOT)
        print(f"random LatentSync 1.6 UNet in upstream's layout: file {weights.stat().st_size / 1e9:.2f} GB")
        print(f"{'load':<24}{'imports MB':>12}{'peak MB':>10}{'load adds MB':>14}")
        for way in ("build+load", "meta+mmap"):
            out = subprocess.run([sys.executable, "-c", LOAD_UNET, str(weights), way], check=True,
                                 capture_output=True, text=True, cwd=ROOT).stdout
            r = json.loads(out.strip().splitlines()[-1])
            assert r["finite"], way
            print(f"{way:<24}{r['imports_mb']:>12.0f}{r['peak_mb']:>10.0f}{r['peak_mb'] - r['imports_mb']:>14.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("steps")
    s.add_argument("--resolution", type=int, nargs="+", default=[256, 512])
    s.add_argument("--frames", type=int, default=16)
    s.add_argument("--device", default="cpu")
    s.add_argument("--precision", nargs="+", default=["fp32"], help="one or several of fp32 fp16 bf16 auto")
    r = sub.add_parser("stream")
    r.add_argument("checkpoints")
    r.add_argument("video")
    r.add_argument("audio")
    r.add_argument("--seconds", type=float, nargs="+", default=[6, 60])
    sub.add_parser("load")
    args = parser.parse_args()
    {"steps": steps_mode, "stream": stream_mode, "load": load_mode}[args.mode](args)


if __name__ == "__main__":
    main()
