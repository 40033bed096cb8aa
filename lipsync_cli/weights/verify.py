"""Is a weights file the right bytes? Size and SHA-256 against the pin, or against the hash seen first.

An entry without a pinned sha256 is trusted on first use: the hash of the first file seen is recorded next to
the cache (cache_dir()/<filename>.sha256) and every later copy must match it.
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


def expected_sha256(spec: WeightSpec) -> str:
    """The pinned hash, else the one recorded when the file was first seen, else '' (nothing known yet)."""
    if spec.sha256:
        return spec.sha256.lower()
    sidecar = _sidecar(spec)
    return sidecar.read_text().split()[0].lower() if sidecar.is_file() else ""


def _record_sha256(spec: WeightSpec, digest: str) -> None:
    sidecar = _sidecar(spec)
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(sidecar) as tmp:
        tmp.write_text(f"{digest}  {spec.filename}\n")


def check(spec: WeightSpec, path: Path) -> Optional[str]:
    """None when `path` holds the right bytes, else a one-line reason. Records the hash on first sight."""
    if spec.size and path.stat().st_size != spec.size:  # cheap: a truncated download needs no hashing
        return f"size {path.stat().st_size} bytes, expected {spec.size}"
    actual, expected = sha256_of(path), expected_sha256(spec)
    if not expected:
        _record_sha256(spec, actual)  # trust on first use: nothing to compare with until now
        return None
    if actual != expected:
        return f"sha256 {actual[:12]}…, expected {expected[:12]}…"
    return None


def verified(spec: WeightSpec, path: Path) -> Path:
    """`path` if its bytes are right; otherwise WeightsError (the bad file is never handed out)."""
    problem = check(spec, path)
    if problem:
        raise WeightsError(f"weights {spec.name!r} at {path} failed verification ({problem}): the file is "
                           f"corrupt or a different file; delete it and run `lipsync weights download {spec.name}`")
    return path


def verify_cached(selected: Optional[Iterable[str]] = None) -> list[tuple[str, str]]:
    """Re-hash local copies (all cached entries by default; named ones must exist). Prints one line each."""
    from rich.console import Console

    console = Console(highlight=False)
    results = []
    for name in (list(selected) if selected else names()):
        spec = entry(name)
        path = find_local(spec)
        if path is None:
            if selected:
                results.append((name, "missing"))
                console.print(f"MISSING {name}: not in $LIPSYNC_WEIGHTS_DIR or {cache_dir()}")
            continue
        problem = check(spec, path)
        results.append((name, problem or "ok"))
        console.print(f"FAILED  {name}: {path}: {problem}" if problem else f"ok      {name}: {path}")
    if not results:
        console.print(f"no weights cached in $LIPSYNC_WEIGHTS_DIR or {cache_dir()}")
    bad = [name for name, status in results if status != "ok"]
    if bad:
        raise WeightsError(f"{len(bad)} weights file(s) failed: {', '.join(bad)}; delete them and run "
                           f"`lipsync weights download {' '.join(bad)}`")
    return results
