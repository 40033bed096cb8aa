"""lipsync_cli.weights: manifest, resolution order, checksums, licence gate, offline behaviour, CLI, packaging.

No test touches the network: an autouse fixture makes every socket connect fail, and downloads go through a
monkeypatched huggingface_hub.hf_hub_download that writes local bytes.
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import signal
import socket
import subprocess
import os
import sys
import time
import zipfile
from pathlib import Path

import pytest

from lipsync_cli import weights
from lipsync_cli.errors import UsageError, WeightsError

ROOT = Path(__file__).resolve().parents[1]
GOOD = b"pretend checkpoint bytes"
BAD = b"pretend checkpoint bytes, but corrupted"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def toy_spec(name="toy", sha256=sha(GOOD), noncommercial=False, **extra) -> weights.WeightSpec:
    fields = dict(name=name, filename=f"{name}.pth", architecture="wav2lip", licence="test licence",
                  licence_note="testing only", repo_id="someone/toy", repo_file=f"ckpt/{name}.pth",
                  revision="0123abc", sha256=sha256, size=0, noncommercial=noncommercial)
    fields.update(extra)
    return weights.WeightSpec(**fields)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails, as on a machine without network (loopback excepted: the
    tests' own HTTP server)."""
    real = socket.create_connection

    def refuse(address, *args, **kwargs):
        if address[0] == "127.0.0.1":
            return real(address, *args, **kwargs)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Clean weights environment: cache in tmp, no weights dir, no licence acceptance, online by default."""
    for var in ("LIPSYNC_WEIGHTS_DIR", "LIPSYNC_ACCEPT_LICENCES", "HF_HUB_OFFLINE", "LIPSYNC_OFFLINE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LIPSYNC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a tty
    return tmp_path


@pytest.fixture
def manifest(monkeypatch):
    """Replace weights.toml by toy entries whose bytes the tests control."""
    specs = {}

    def install(*entries):
        specs.update({spec.name: spec for spec in entries})
        return specs

    monkeypatch.setattr(weights.manifest, "_manifest", lambda: specs)
    return install


@pytest.fixture
def hub(monkeypatch):
    """A fake hf_hub_download writing `hub.payload` (and recording its calls); the network check passes."""

    class FakeHub:
        payload = GOOD
        calls: list[dict] = []
        error: Exception | None = None

        def __call__(self, repo_id, filename, *, revision=None, local_dir=None, **kwargs):
            self.calls.append(dict(repo_id=repo_id, filename=filename, revision=revision))
            if self.error is not None:
                raise self.error
            out = Path(local_dir) / filename
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(self.payload)
            return str(out)

    fake = FakeHub()
    fake.calls = []
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    monkeypatch.setattr(weights.network, "_reachable", lambda host, port=443: True)
    return fake


def write(path: Path, data: bytes = GOOD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- the real manifest


def test_manifest_entries_have_required_fields():
    required = {"wav2lip", "wav2lip_gan", "lipsync_expert", "s3fd", "2dfan4"}
    assert required <= set(weights.names())
    for name in weights.names():
        spec = weights.entry(name)
        assert spec.filename and spec.architecture and spec.licence and spec.licence_url, name
        sources = [bool(spec.repo_id), bool(spec.url), bool(spec.bundled_in)]
        assert sum(sources) == 1, f"{name}: exactly one of repo_id / url / bundled_in"
        if spec.bundled_in:
            assert not spec.noncommercial, f"{name}: nothing to download, so no licence prompt"
        elif spec.repo_id:
            assert spec.repo_file and spec.revision, name
        else:
            assert spec.url.startswith("https://"), name
        assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256) or spec.sha256 == "", name
        assert isinstance(spec.size, int) and spec.size >= 0, name
    for name in ("wav2lip", "wav2lip_gan", "lipsync_expert"):
        assert weights.entry(name).noncommercial and "non-commercial" in weights.entry(name).licence
    assert weights.entry("lipsync_expert").architecture == "syncnet"


def test_face_alignment_entries_match_its_own_urls_and_hash_prefixes():
    import importlib.util

    package = Path(importlib.util.find_spec("face_alignment").submodule_search_locations[0])
    source = (package / "api.py").read_text() + (package / "detection/sfd/sfd_detector.py").read_text()
    for name in ("s3fd", "2dfan4"):
        spec = weights.entry(name)
        assert f"'{spec.url}'" in source, f"{name}: face_alignment no longer uses {spec.url}"
        assert spec.filename == spec.url.rsplit("/", 1)[1]  # torch.hub caches under the URL's basename
        # torch-hub file names embed the first hex digits of the file's sha256
        assert spec.sha256.startswith(re.search(r"-([0-9a-f]{10})\.", spec.filename).group(1))


def test_unknown_name_and_missing_path(env):
    with pytest.raises(UsageError, match="wav2lip_gan"):
        weights.resolve("no_such_weights")
    with pytest.raises(WeightsError, match="checkpoint not found"):  # exit 3, as the README documents
        weights.resolve(env / "missing.pth")


# ---------------------------------------------------------------- resolution order


def test_explicit_path_beats_everything(env, manifest, monkeypatch):
    manifest(toy_spec())
    own = write(env / "mine" / "toy.pth", b"my own trained checkpoint")  # not the pinned bytes: used as given
    write(env / "cache" / "toy.pth")
    assert weights.resolve(own) == own
    assert weights.resolve(str(own)) == own


def test_weights_dir_beats_cache(env, manifest, monkeypatch):
    manifest(toy_spec())
    cached = write(env / "cache" / "toy.pth")
    assert weights.resolve("toy") == cached
    monkeypatch.setenv("LIPSYNC_WEIGHTS_DIR", str(env / "wdir"))
    assert weights.resolve("toy") == cached  # nothing in the weights dir yet: falls through to the cache
    local = write(env / "wdir" / "toy.pth")
    assert weights.resolve("toy") == local


def test_cache_dir_follows_xdg_when_not_overridden(env, monkeypatch):
    monkeypatch.delenv("LIPSYNC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(env / "xdg"))
    assert weights.cache_dir() == env / "xdg" / "lipsync-cli"


def test_missing_without_download_names_the_file(env, manifest, hub):
    manifest(toy_spec())
    with pytest.raises(WeightsError, match=r"'toy' \(toy\.pth\) not found locally.*LIPSYNC_WEIGHTS_DIR"):
        weights.resolve("toy", download=False)
    assert hub.calls == []


# ---------------------------------------------------------------- checksums


def test_corrupt_cached_file_is_refused(env, manifest):
    manifest(toy_spec())
    write(env / "cache" / "toy.pth", BAD)
    with pytest.raises(WeightsError, match=r"'toy' .*toy\.pth failed verification.*delete .*toy\.pth and run"):
        weights.resolve("toy")


def test_corrupt_file_in_weights_dir_is_not_replaced_by_silent_fallback(env, manifest, monkeypatch):
    manifest(toy_spec())
    write(env / "cache" / "toy.pth")
    monkeypatch.setenv("LIPSYNC_WEIGHTS_DIR", str(env / "wdir"))
    write(env / "wdir" / "toy.pth", BAD)
    with pytest.raises(WeightsError, match="wdir"):
        weights.resolve("toy")


def test_size_mismatch_fails_before_hashing(env, manifest, monkeypatch):
    manifest(toy_spec(size=len(GOOD) + 1))
    write(env / "cache" / "toy.pth")
    monkeypatch.setattr(weights.verify, "sha256_of", lambda path: pytest.fail("hashed despite a wrong size"))
    with pytest.raises(WeightsError, match="size"):
        weights.resolve("toy")


def test_download_is_verified_and_a_bad_download_is_not_kept(env, manifest, hub):
    manifest(toy_spec(), toy_spec("evil"))
    path = weights.resolve("toy")
    assert path == env / "cache" / "toy.pth" and path.read_bytes() == GOOD
    assert hub.calls == [dict(repo_id="someone/toy", filename="ckpt/toy.pth", revision="0123abc")]
    hub.payload = BAD
    with pytest.raises(WeightsError, match="failed verification"):
        weights.resolve("evil")
    assert sorted(p.name for p in (env / "cache").iterdir()) == ["toy.pth"]  # no bad file, no temp leftovers


def test_unpinned_hash_is_recorded_at_first_download_then_enforced(env, manifest, hub):
    manifest(toy_spec(sha256=""))
    path = weights.resolve("toy")
    sidecar = env / "cache" / "toy.pth.sha256"
    assert sidecar.read_text().split()[0] == sha(GOOD)
    assert weights.resolve("toy") == path  # same bytes: still fine
    path.write_bytes(BAD)
    with pytest.raises(WeightsError, match="failed verification"):
        weights.resolve("toy")
    assert len(hub.calls) == 1


def test_verify_cached_reports_and_fails_on_corruption(env, manifest, capsys):
    manifest(toy_spec(), toy_spec("other"))
    write(env / "cache" / "toy.pth")
    assert weights.verify_cached() == [("toy", "ok")]  # 'other' is not cached: skipped by default
    with pytest.raises(WeightsError, match="other"):
        weights.verify_cached(["other"])  # named explicitly: missing is a failure
    write(env / "cache" / "toy.pth", BAD)
    with pytest.raises(WeightsError, match="toy"):
        weights.verify_cached()
    assert "FAILED  toy" in capsys.readouterr().out


# ---------------------------------------------------------------- licences


def test_noncommercial_download_needs_acceptance_when_not_interactive(env, manifest, hub, capsys):
    manifest(toy_spec(noncommercial=True))
    with pytest.raises(WeightsError, match=r"--yes.*LIPSYNC_ACCEPT_LICENCES=1"):
        weights.resolve("toy")
    assert hub.calls == [] and not (env / "cache" / "toy.pth").exists()
    assert "test licence" in capsys.readouterr().err  # the terms were shown
    assert weights.resolve("toy", accept_licence=True).read_bytes() == GOOD


def test_licence_accepted_by_environment(env, manifest, hub, monkeypatch):
    manifest(toy_spec(noncommercial=True))
    monkeypatch.setenv("LIPSYNC_ACCEPT_LICENCES", "1")
    assert weights.resolve("toy").is_file()


@pytest.mark.parametrize("answer, accepted", [("y\n", True), ("n\n", False), ("\n", False)])
def test_licence_prompt_when_interactive(env, manifest, hub, monkeypatch, answer, accepted):
    manifest(toy_spec(noncommercial=True))
    tty = io.StringIO(answer)
    tty.isatty = lambda: True
    monkeypatch.setattr(sys, "stdin", tty)
    if accepted:
        assert weights.resolve("toy").is_file()
    else:
        with pytest.raises(WeightsError, match="not accepted"):
            weights.resolve("toy")
        assert hub.calls == []


# ---------------------------------------------------------------- offline


@pytest.mark.parametrize("var", ["HF_HUB_OFFLINE", "LIPSYNC_OFFLINE"])
def test_offline_env_fails_fast_naming_the_file(env, manifest, hub, monkeypatch, var):
    manifest(toy_spec())
    monkeypatch.setenv(var, "1")
    start = time.monotonic()
    with pytest.raises(WeightsError) as err:
        weights.resolve("toy")
    assert time.monotonic() - start < 2.0
    message = str(err.value)
    assert "'toy' (toy.pth) not found locally and offline" in message and "LIPSYNC_WEIGHTS_DIR" in message
    assert var in message and hub.calls == []


def test_no_network_fails_fast_even_when_dns_hangs(env, manifest, monkeypatch):
    """The real reachability probe, with a connect that hangs for 5 s: still < 2 s, no hub call."""
    manifest(toy_spec())

    def hang(*args, **kwargs):
        time.sleep(5)
        raise OSError("timed out")

    monkeypatch.setattr(socket, "create_connection", hang)
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("tried the hub"))
    start = time.monotonic()
    with pytest.raises(WeightsError, match="cannot reach huggingface.co"):
        weights.resolve("toy")
    assert time.monotonic() - start < 2.0


def test_hub_offline_errors_become_the_offline_message(env, manifest, hub):
    from huggingface_hub.errors import LocalEntryNotFoundError

    manifest(toy_spec())
    hub.error = LocalEntryNotFoundError("cannot find the requested files in the local cache")
    with pytest.raises(WeightsError, match=r"not found locally and offline.*LIPSYNC_WEIGHTS_DIR"):
        weights.resolve("toy")
    assert list((env / "cache").iterdir()) == []  # staging folder removed


@pytest.fixture
def http_files():
    """A real HTTP server on 127.0.0.1 serving a dict {path: bytes}; yields (files, base URL)."""
    import http.server
    import threading

    files: dict = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield files, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_download_streams_to_temp_then_renames(env, manifest, monkeypatch, http_files):
    files, base = http_files
    files["/files/toy.pth"] = GOOD
    manifest(toy_spec(repo_id="", repo_file="", url=f"{base}/files/toy.pth"))
    monkeypatch.setattr(weights.network, "_reachable", lambda host, port=443: host == "127.0.0.1")
    path = weights.resolve("toy")
    assert path.read_bytes() == GOOD and [p.name for p in path.parent.iterdir()] == ["toy.pth"]


def test_url_download_that_fails_verification_or_404s_leaves_nothing(env, manifest, monkeypatch, http_files):
    files, base = http_files
    files["/files/toy.pth"] = BAD
    monkeypatch.setattr(weights.network, "_reachable", lambda host, port=443: host == "127.0.0.1")
    for url, needle in ((f"{base}/files/toy.pth", "failed verification"), (f"{base}/missing.pth", "404")):
        manifest(toy_spec(repo_id="", repo_file="", url=url))
        with pytest.raises(WeightsError, match=needle):
            weights.resolve("toy")
        assert not any((env / "cache").iterdir()), list((env / "cache").iterdir())


# ---------------------------------------------------------------- face-alignment


def test_prepare_face_alignment_makes_face_alignment_find_files_offline(env, monkeypatch):
    import torch
    import torch.hub

    fa_utils = pytest.importorskip("face_alignment.utils")
    real = {name: weights.entry(name) for name in ("s3fd", "2dfan4")}
    blobs = {}
    for name, spec in real.items():
        buffer = io.BytesIO()
        torch.save({"weight": torch.full((2,), float(len(name)))}, buffer)
        blobs[name] = buffer.getvalue()
        write(env / "cache" / spec.filename, blobs[name])
    toys = {name: toy_spec(name, filename=spec.filename, url=spec.url, repo_id="", repo_file="", sha256=sha(blobs[name]))
            for name, spec in real.items()}
    monkeypatch.setattr(weights.manifest, "_manifest", lambda: toys)
    hub_dir = env / "torch_hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub_dir))
    monkeypatch.setattr(fa_utils, "get_dir", lambda: str(hub_dir))
    write(hub_dir / "checkpoints" / real["s3fd"].filename, BAD)  # a stale, corrupt copy gets replaced

    from lipsync_cli.faces.face_alignment_backend import prepare_files

    paths = prepare_files("sfd")
    assert set(paths) == {"s3fd", "2dfan4"}
    # the exact calls face_alignment 1.5 makes; the network is disabled, so these only work from the hub dir
    detector = torch.hub.load_state_dict_from_url(real["s3fd"].url)
    assert torch.equal(detector["weight"], torch.full((2,), 4.0))
    landmarks = Path(fa_utils.load_file_from_url(real["2dfan4"].url))
    assert landmarks.read_bytes() == blobs["2dfan4"]


# ---------------------------------------------------------------- CLI and packaging


def run_cli(args, capsys):
    from lipsync_cli.cli import main

    previous = signal.getsignal(signal.SIGTERM)  # main() installs a SIGTERM handler: keep pytest's
    try:
        with pytest.raises(SystemExit) as done:
            main(args)
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


def test_cli_weights_path_and_verify(env, manifest, capsys):
    manifest(toy_spec(), toy_spec("wav2lip_gan"))  # the default model's file, present: verify checks it too
    write(env / "cache" / "wav2lip_gan.pth")
    code, out, err = run_cli(["weights", "path", "toy"], capsys)
    assert code == 3 and "toy.pth" in err and "weights download toy" in err
    cached = write(env / "cache" / "toy.pth")
    code, out, err = run_cli(["weights", "path", "toy"], capsys)
    assert code == 0 and out.strip() == str(cached)
    assert run_cli(["weights", "verify"], capsys)[0] == 0
    write(cached, BAD)
    code, out, err = run_cli(["weights", "verify"], capsys)
    assert code == 3 and "toy" in err


def _list_rows(stdout: str) -> dict:
    """`weights list` piped: a header, then one tab-separated line per entry → {name: {column: cell}}."""
    header, *lines = stdout.strip().splitlines()
    columns = header.split("\t")
    return {cells[0]: dict(zip(columns, cells)) for cells in (line.split("\t") for line in lines)}


def test_cli_weights_list_subprocess(env):
    """The real CLI and manifest in a process of its own, piped at 80 columns: one whole line per entry, no
    word split (rich folded `non-commerci al` and `lipsync_exp ert` there)."""
    cmd = [sys.executable, "-m", "lipsync_cli"]  # this checkout's code (an installed console script may not be)

    environ = {**os.environ, "LIPSYNC_CACHE_DIR": str(env / "cache"), "COLUMNS": "80"}
    environ.pop("LIPSYNC_WEIGHTS_DIR", None)
    write(env / "cache" / "s3fd-619a316812.pth", b"x")  # present (listing does not hash)
    done = subprocess.run(cmd + ["weights", "list"], capture_output=True, text=True, env=environ, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = _list_rows(done.stdout)
    assert list(rows) == weights.names()  # every name whole, one line each
    assert rows["wav2lip_gan"]["licence"] == "non-commercial research only"
    assert rows["s3fd"]["cached"].startswith("yes") and rows["wav2lip_gan"]["cached"] == "no"
    assert rows["wav2lip_gan"]["size"] == "436 MB" and rows["musetalk_unet"]["size"] == "~3.4 GB"
    assert rows["dlib_68"]["size"].endswith("MB")  # bundled: the installed file says its size
    as_json = subprocess.run(cmd + ["weights", "list", "--json"], capture_output=True, text=True, env=environ,
                             timeout=60)
    import json

    listed = json.loads(as_json.stdout)["weights"]
    assert [r["name"] for r in listed] == weights.names() and listed[0]["size_bytes"] == weights.entry("wav2lip").size


def test_a_file_the_user_placed_is_not_recorded_and_a_stale_hash_says_what_to_do(env, manifest, hub, monkeypatch):
    """Only a download records a hash; a copy the user put in $LIPSYNC_WEIGHTS_DIR is used without a record, so
    a later, different real file is not refused. A cached download that changed names the file and the way out."""
    manifest(toy_spec(sha256=""))
    monkeypatch.setenv("LIPSYNC_WEIGHTS_DIR", str(env / "w"))
    write(env / "w" / "toy.pth", BAD)
    assert weights.resolve("toy") == env / "w" / "toy.pth"
    assert not (env / "cache" / "toy.pth.sha256").exists()
    write(env / "w" / "toy.pth", GOOD)  # the user replaces it with the real file: still fine
    assert weights.resolve("toy") == env / "w" / "toy.pth"
    monkeypatch.delenv("LIPSYNC_WEIGHTS_DIR")
    cached = weights.resolve("toy")  # downloaded: now recorded and enforced
    assert (env / "cache" / "toy.pth.sha256").read_text().split()[0] == sha(GOOD)
    cached.write_bytes(BAD)
    with pytest.raises(WeightsError) as failure:
        weights.resolve("toy")
    message = str(failure.value)
    assert f"delete {cached}" in message and "toy.pth.sha256" in message and "weights download toy" in message


def test_cli_family_names_model_errors_and_verify_of_the_default_files(env, capsys, tmp_path):
    """`weights path/verify musetalk` take the family name; `--model` lists generators only, exit 3 for a
    missing file; `weights verify` names the default model's missing files and fails."""
    code, out, err = run_cli(["weights", "path", "musetalk"], capsys)
    assert code == 3 and "musetalk_unet" in err
    code, out, err = run_cli(["weights", "verify", "musetalk"], capsys)
    assert code == 3 and all(f"MISSING {n}" in out for n in weights.expand(["musetalk"]))
    video, audio = write(tmp_path / "v.mp4"), write(tmp_path / "a.wav")
    code, out, err = run_cli(["dub", str(video), str(audio), "--model", "nosuch.pth"], capsys)
    assert code == 3 and "wav2lip_gan, musetalk" in err and "s3fd" not in err and "dlib_68" not in err
    code, out, err = run_cli(["dub", str(video), str(audio), "--model", "dlib_68"], capsys)
    assert code == 2 and "not a lip-sync generator" in err and "code could run" not in err
    code, out, err = run_cli(["weights", "verify"], capsys)
    assert code == 3 and "MISSING wav2lip_gan" in out and "wav2lip_gan" in err


def test_wheel_ships_weights_toml(tmp_path):
    """A non-editable install reads weights.toml from the wheel: the file must be inside it."""
    src = tmp_path / "src"  # build from a copy so the shared working tree gets no build/ or egg-info
    shutil.copytree(ROOT / "lipsync_cli", src / "lipsync_cli", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("lipsync_cli-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("lipsync_cli/weights.toml").decode()
    assert shipped == (ROOT / "lipsync_cli" / "weights.toml").read_text()


def test_every_entry_states_whether_commercial_use_is_allowed():
    """Every model file of a run has a licence and a commercial yes/no/unknown (detectors included)."""
    specs = {name: weights.entry(name) for name in weights.names()}
    assert all(spec.commercial in ("yes", "no", "unknown") and spec.licence for spec in specs.values())
    assert {n: specs[n].commercial for n in ("wav2lip_gan", "dlib_68", "s3fd", "2dfan4", "musetalk_unet", "sd_vae",
                                             "whisper_tiny")} == \
        {"wav2lip_gan": "no", "dlib_68": "no", "s3fd": "unknown", "2dfan4": "unknown", "musetalk_unet": "yes",
         "sd_vae": "yes", "whisper_tiny": "yes"}


def test_licence_notice_names_what_a_run_used(tmp_path):
    from lipsync_cli.faces import get_detector

    assert weights.model_entries("musetalk") == [n for n in weights.names() if weights.entry(n).architecture == "musetalk"]
    # all its parts allow commercial use: the line says so
    assert weights.licence_notice(weights.model_entries("musetalk")).startswith("licence: every model of this run is cleared")
    own = tmp_path / "best.pt"
    own.write_bytes(b"x")
    assert weights.model_entries(str(own)) == []  # the user's own checkpoint: its terms are theirs
    copy = tmp_path / "wav2lip_gan.pth"
    copy.write_bytes(b"x")
    assert weights.model_entries(str(copy)) == ["wav2lip_gan"]
    notice = weights.licence_notice([*weights.model_entries("musetalk"), *get_detector("dlib").weights])
    assert notice.startswith("licence: not cleared for commercial use: dlib_68 (non-commercial)")
    assert "musetalk" not in notice and "\n" not in notice


def test_weights_list_shows_the_commercial_column_and_the_bundled_dlib_model():
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "lipsync_cli", "weights", "list"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    row = _list_rows(proc.stdout)["dlib_68"]
    assert row["commercial"] == "no" and row["cached"].startswith("yes"), row  # the test extra installs it
    row = _list_rows(proc.stdout)["face_landmarker"]  # the MediaPipe face backend: cleared
    assert (row["architecture"], row["licence"], row["commercial"]) == ("mediapipe", "Apache-2.0", "yes"), row


def test_small_pinned_sizes_read_in_kilobytes():
    """LatentSync's 1,871-byte mask read "0.0 MB" in `weights list`."""
    from lipsync_cli.weights import table

    assert table.size_text(weights.entry("latentsync_mask"), None) == "1.9 kB"
    assert table.size_text(weights.entry("face_landmarker"), None) == "3.8 MB"
