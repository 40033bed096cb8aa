"""Is a weights file the right bytes? Size and SHA-256 against the pin, or against the hash seen first.

An entry without a pinned sha256: when lipsync downloads it, the hash is recorded next to the cache copy
(cache_dir()/<filename>.sha256) and that copy must match it from then on. A copy the user placed themselves
(in $LIPSYNC_WEIGHTS_DIR or the cache) is never recorded: nothing says it is the published file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Optional

from lipsync_cli.errors import WeightsError
from lipsync_cli.media.atomic import atomic_output
from lipsync_cli.weights.cache import cache_dir, find_local
from lipsync_cli.weights.manifest import WeightSpec, entry, names

CHUNK = 1 << 20  # 1 MiB reads for hashing


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(spec: WeightSpec) -> Path:
    return cache_dir() / f"{spec.filename}.sha256"


def _is_our_download(spec: WeightSpec, path: Path) -> bool:
    """Only the cache copy is ever written by `download`; a recorded hash speaks for that file alone."""
    return path.resolve() == (cache_dir() / spec.filename).resolve()


def expected_sha256(spec: WeightSpec, path: Optional[Path] = None) -> str:
    """The pinned hash; else, for the cache copy (`path` None or that file), the hash recorded when lipsync
    downloaded it; else '' (nothing to compare with: a file the user placed themselves)."""
    if spec.sha256:
        return spec.sha256.lower()
    sidecar = _sidecar(spec)
    if sidecar.is_file() and (path is None or _is_our_download(spec, path)):
        return sidecar.read_text().split()[0].lower()
    return ""


def _record_sha256(spec: WeightSpec, digest: str) -> None:
    sidecar = _sidecar(spec)
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(sidecar) as tmp:
        tmp.write_text(f"{digest}  {spec.filename}\n")


def check(spec: WeightSpec, path: Path, downloaded: bool = False) -> Optional[str]:
    """None when `path` holds the right bytes, else a one-line reason. `downloaded`: the bytes lipsync just
    fetched, whose hash (when none is pinned) is recorded and enforced from then on; a file found on disk is
    never recorded, since nothing says it is the published one."""
    if spec.size and path.stat().st_size != spec.size:  # cheap: a truncated download needs no hashing
        return f"size {path.stat().st_size} bytes, expected {spec.size}"
    expected = spec.sha256.lower() if spec.sha256 else "" if downloaded else expected_sha256(spec, path)
    if not expected and not downloaded:
        return None  # unpinned and not ours: nothing to compare with
    actual = sha256_of(path)
    if not expected:
        _record_sha256(spec, actual)
    elif actual != expected:
        return f"sha256 {actual[:12]}…, expected {expected[:12]}…"
    return None


def mismatch_advice(spec: WeightSpec, path: Path) -> str:
    """What to do about a file that failed: which file to delete, and what then."""
    if spec.sha256 or spec.size:
        return f"delete {path} and run `lipsync weights download {spec.name}`"
    return (f"it differs from the copy lipsync downloaded (hash recorded in {_sidecar(spec)}): if you replaced it "
            f"on purpose, delete that .sha256 file; otherwise delete {path} and run "
            f"`lipsync weights download {spec.name}`")


def verified(spec: WeightSpec, path: Path) -> Path:
    """`path` if its bytes are right; otherwise WeightsError (the bad file is never handed out)."""
    problem = check(spec, path)
    if problem:
        raise WeightsError(f"weights {spec.name!r} at {path} failed verification ({problem}): "
                           + mismatch_advice(spec, path))
    return path


def verify_cached(selected: Optional[Iterable[str]] = None, required: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Re-hash local copies: the named entries (which must exist), or by default every one found locally plus
    `required` (the files a default run needs), which are reported missing when absent. One line each."""
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    chosen = list(selected) if selected else list(dict.fromkeys([*names(), *required]))
    must_exist = set(chosen if selected else required)
    results = []
    for name in chosen:
        spec = entry(name)
        path = find_local(spec)
        if path is None:
            if name in must_exist:
                results.append((name, "missing"))
                why = "" if selected else " (needed by `lipsync dub` with its defaults)"
                console.print(f"MISSING {name}{why}: not in $LIPSYNC_WEIGHTS_DIR or {cache_dir()}")
            continue
        problem = check(spec, path)
        results.append((name, problem or "ok"))
        console.print(f"FAILED  {name}: {path}: {problem}" if problem else f"ok      {name}: {path}")
    if not results:
        console.print(f"no weights cached in $LIPSYNC_WEIGHTS_DIR or {cache_dir()}")
    missing = [name for name, status in results if status == "missing"]
    bad = [name for name, status in results if status not in ("ok", "missing")]
    if missing or bad:
        parts = ([f"missing: {', '.join(missing)}"] if missing else []) + ([f"failed: {', '.join(bad)}"] if bad else [])
        advice = "delete the failed ones and " if bad else ""
        raise WeightsError(f"{'; '.join(parts)}; {advice}run `lipsync weights download {' '.join(missing + bad)}`")
    return results
