"""`lipsync dub --jobs JOBS.csv`: one broken row never stops the batch, a re-run skips finished rows,
`--shard i/n` splits rows deterministically; and the job-file parser (paths, columns) on its own."""

import re
import shutil
from pathlib import Path

import pytest
from cli_utils import lipsync_in_process
from conftest import make_speech

from lipsync_cli.batch import read_jobs, shard_jobs
from lipsync_cli.errors import InputError


def run_jobs(capfd, jobs: Path, *extra, model=None):
    """The CLI on a job file, in this process (tests/cli_utils.py); face tracks cached beside the job file, not in
    the user's cache."""
    args = ["dub", "--jobs", str(jobs), "--detector", "dlib", "--device", "cpu", *extra]
    if model is not None:
        args += ["--model", str(model)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIPSYNC_CACHE_DIR", str(jobs.parent / "cache"))
        return lipsync_in_process(capfd, *args)


def table_count(stderr: str, status: str) -> int:
    """The `rows` cell of a status line in the final rich table (box characters vary with the terminal)."""
    match = re.search(rf"^\W*{status}\W+(\d+)", stderr, flags=re.MULTILINE)
    assert match, f"no {status!r} line in the final table:\n{stderr}"
    return int(match.group(1))


def test_batch_reports_failed_row_continues_and_resumes(tmp_path, face_clip, wav2lip_ckpt, capfd):
    """4 rows, row 3 broken (a text file as VIDEO): run 1 → 3 done + 1 failed, exit 1; run 2 skips the 3."""
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    shutil.copy(face_clip, tmp_path / "in" / "face.mp4")
    make_speech(tmp_path / "in" / "hi.wav", "Hello there.")  # ~1 s: each dub is ~25 frames
    (tmp_path / "in" / "notes.mp4").write_text("not a video\n")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("video,audio,output\n"
                    "in/face.mp4,in/hi.wav,out/a.mp4\n"
                    "in/face.mp4,in/hi.wav,out/b.mp4\n"
                    "in/notes.mp4,in/hi.wav,out/broken.mp4\n"
                    "in/face.mp4,in/hi.wav,\n")  # empty output: <video stem>_<audio stem>_dubbed.mp4 beside the video
    outputs = [tmp_path / "out" / "a.mp4", tmp_path / "out" / "b.mp4", tmp_path / "in" / "face_hi_dubbed.mp4"]

    first = run_jobs(capfd, jobs, model=wav2lip_ckpt)
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    assert re.search(r"^row 3 failed: .*not a video.*notes\.mp4", first.stderr, flags=re.MULTILINE), first.stderr
    for row in (1, 2, 4):
        assert re.search(rf"^row {row} done", first.stderr, flags=re.MULTILINE), first.stderr
    assert (table_count(first.stderr, "done"), table_count(first.stderr, "skipped"),
            table_count(first.stderr, "failed")) == (3, 0, 1)
    assert all(p.is_file() and p.stat().st_size > 1000 for p in outputs)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp4", "b.mp4"]  # no broken/partial file
    assert not list((tmp_path / "in").glob(".*partial*"))
    mtimes = [p.stat().st_mtime_ns for p in outputs]

    second = run_jobs(capfd, jobs, model=wav2lip_ckpt)
    assert second.returncode == 1, second.stderr
    assert not re.search(r"^row \d+ done", second.stderr, flags=re.MULTILINE), second.stderr
    for row in (1, 2, 4):
        assert re.search(rf"^row {row} skipped: output exists", second.stderr, flags=re.MULTILINE), second.stderr
    reasons = r"\W+".join("row 1: output exists; row 2: output exists; row 4: output exists".split())
    assert re.search(reasons, second.stderr), second.stderr  # the table's reasons cell (rich may wrap it)
    assert re.search(r"^row 3 failed: .*not a video", second.stderr, flags=re.MULTILINE), second.stderr
    assert (table_count(second.stderr, "done"), table_count(second.stderr, "skipped"),
            table_count(second.stderr, "failed")) == (0, 3, 1)
    assert [p.stat().st_mtime_ns for p in outputs] == mtimes


def write_jobs(path: Path, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["video,audio,output"] + [f"v{k}.mp4,sub/a{k}.wav,out/o{k}.mp4" for k in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_inputs(folder: Path, n: int) -> None:
    """The files write_jobs' rows name (their content is never read by the fakes)."""
    (folder / "sub").mkdir(exist_ok=True)
    for k in range(n):
        (folder / f"v{k}.mp4").write_bytes(b"video")
        (folder / "sub" / f"a{k}.wav").write_bytes(b"audio")


def test_read_jobs_resolves_paths_against_the_job_file_folder(tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # relative paths must not depend on where the command runs
    jobs = tmp_path / "batch" / "jobs.csv"
    jobs.parent.mkdir()
    absolute = tmp_path / "abs.wav"
    jobs.write_text(f"video,audio,output\nclip.mp4,{absolute},dub/x.mp4\n sub/clip2.mov , a.wav ,\n")
    first, second = read_jobs(jobs)
    base = tmp_path / "batch"
    assert (first.row, first.video, first.audio, first.output) == (1, base / "clip.mp4", absolute, base / "dub/x.mp4")
    assert (second.row, second.video, second.audio) == (2, base / "sub/clip2.mov", base / "a.wav")
    assert second.output == base / "sub" / "clip2_a_dubbed.mp4"


def test_shard_splits_rows_deterministically_and_disjointly(tmp_path):
    jobs = read_jobs(write_jobs(tmp_path / "jobs.csv", 7))
    a, b = shard_jobs(jobs, (0, 2)), shard_jobs(jobs, (1, 2))
    assert [j.row for j in a] == [1, 3, 5, 7] and [j.row for j in b] == [2, 4, 6]
    assert shard_jobs(read_jobs(tmp_path / "jobs.csv"), (0, 2)) == a  # same rows on every machine
    assert shard_jobs(jobs, (0, 1)) == jobs
    thirds = [shard_jobs(jobs, (i, 3)) for i in range(3)]
    assert sorted(j.row for part in thirds for j in part) == list(range(1, 8))


def test_read_jobs_rejects_malformed_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("video,output\nv.mp4,o.mp4\n")
    with pytest.raises(InputError, match="audio"):
        read_jobs(bad)
    short = tmp_path / "short.csv"
    short.write_text("video,audio,output\nv.mp4\n")  # a row missing cells: clear error, not a crash
    with pytest.raises(InputError, match="row 1"):
        read_jobs(short)
    with pytest.raises(InputError, match="does not exist"):
        read_jobs(tmp_path / "missing.csv")


def test_run_batch_loads_models_once_and_survives_any_row_error(tmp_path, monkeypatch):
    """Fakes for dub and the loaders: what is checked is run_batch's own bookkeeping."""
    from dataclasses import replace

    import lipsync_cli.batch
    from lipsync_cli.batch import run_batch
    from lipsync_cli.config import DubConfig, FaceConfig

    loads, seen = [], []
    monkeypatch.setattr(lipsync_cli.batch, "load_for", lambda *a: loads.append("generator") or object())
    monkeypatch.setattr(lipsync_cli.batch, "get_detector", lambda *a, **k: loads.append("detector") or object())

    def fake_dub(video, audio, out, cfg, generator, detector):
        seen.append((generator, detector, cfg.quiet))
        if video.name == "v1.mp4":
            raise InputError("bad row")
        if video.name == "v2.mp4":
            raise ZeroDivisionError("bug")
        out.write_bytes(b"mp4")
        return lipsync_cli.pipeline.DubResult(out, frames=25, frames_edited=20)

    monkeypatch.setattr(lipsync_cli.batch, "dub", fake_dub)
    jobs = write_jobs(tmp_path / "jobs.csv", 5)
    write_inputs(tmp_path, 5)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "o4.mp4").write_bytes(b"done earlier")
    cfg = DubConfig(model="x.pt", faces=FaceConfig(detector="dlib"), device="cpu", quiet=True)
    assert run_batch(jobs, cfg) == 1
    assert sorted(loads) == ["detector", "generator"]  # once for the whole batch
    assert len(seen) == 4 and len({(id(g), id(d)) for g, d, _ in seen}) == 1 and all(q for _, _, q in seen)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["o0.mp4", "o3.mp4", "o4.mp4"]
    assert (tmp_path / "out" / "o4.mp4").read_bytes() == b"done earlier"
    assert run_batch(jobs, cfg, shard=(0, 3)) == 0  # rows 1 and 4 of the file: both outputs exist now
    seen.clear()
    (tmp_path / "out" / "o3.mp4").write_bytes(b"old")
    assert run_batch(jobs, replace(cfg, force=True), shard=(0, 3)) == 0  # --force: done rows are dubbed again
    assert len(seen) == 2 and (tmp_path / "out" / "o3.mp4").read_bytes() == b"mp4"


def test_cli_missing_column_is_one_line_error(tmp_path, capfd):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("file,speech\nv.mp4,a.wav\n")
    proc = run_jobs(capfd, jobs, "-q")  # fails before any model is loaded
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "video, audio" in lines[0], proc.stderr


@pytest.mark.parametrize("shard", ["2/2", "x"])
def test_cli_bad_shard_is_usage_error(tmp_path, shard, capfd):
    proc = run_jobs(capfd, write_jobs(tmp_path / "jobs.csv", 2), "--shard", shard, "-q")
    assert proc.returncode == 2 and proc.stderr.startswith("error: --shard"), proc.stderr


def test_cli_bad_model_fails_once_before_any_row(tmp_path, capfd):
    """A corrupt --model is one error for the whole batch (not the same failure on every row)."""
    model = tmp_path / "bad.pth"
    model.write_bytes(b"junk")
    write_inputs(tmp_path, 3)
    proc = run_jobs(capfd, write_jobs(tmp_path / "jobs.csv", 3), model=model)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "bad.pth" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


LANGUAGES = {"en": "Hello there, my friend.", "fr": "Bonjour mon ami, comment vas tu?", "de": "Guten Tag."}


@pytest.fixture(scope="module")
def languages(tmp_path_factory, face_clip) -> Path:
    """in/face.mp4 (3 s real face) and one speech file per language, of different lengths."""
    root = tmp_path_factory.mktemp("languages")
    (root / "in").mkdir()
    shutil.copy(face_clip, root / "in" / "face.mp4")
    for lang, text in LANGUAGES.items():
        make_speech(root / "in" / f"{lang}.wav", text)
    return root


def count_detections(monkeypatch) -> list:
    """Every real detect_track call (the pipeline's only way to detect faces) is recorded."""
    from lipsync_cli.faces import track

    calls, real = [], track.detect_track
    monkeypatch.setattr(track, "detect_track", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_one_video_into_three_languages_one_detection_rerun_skips(languages, tmp_path, monkeypatch, capsys,
                                                                   wav2lip_ckpt):
    """Blank outputs give one file per language, each with its own speech; the face is detected once for all three
    (and not again on a re-run); a row whose input is missing is failed before row 1 runs while the others run."""
    import csv

    from lipsync_cli import media
    from lipsync_cli.batch import run_batch
    from lipsync_cli.config import DubConfig, FaceConfig

    monkeypatch.setenv("LIPSYNC_CACHE_DIR", str(tmp_path / "cache"))
    calls = count_detections(monkeypatch)
    jobs = languages / "jobs.csv"
    jobs.write_text("video,audio,output\n" + "".join(f"in/face.mp4,in/{lang}.wav,\n" for lang in LANGUAGES)
                    + "in/gone.mp4,in/en.wav,\n")
    report = tmp_path / "report.csv"
    cfg = DubConfig(model=str(wav2lip_ckpt), faces=FaceConfig(detector="dlib"), device="cpu")
    assert run_batch(jobs, cfg, report=report) == 1  # row 4 failed
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("row ")]
    assert lines[0].startswith("row 4 failed: video") and "gone.mp4 does not exist" in lines[0], lines
    assert [line.split()[:3] for line in lines[1:]] == [["row", "1", "done"], ["row", "2", "done"],
                                                         ["row", "3", "done"]]
    assert len(calls) == 1  # one detection for three languages
    rows = list(csv.DictReader(report.open()))
    assert [r["status"] for r in rows] == ["done", "done", "done", "failed"]
    assert float(rows[0]["detect_seconds"]) > 0 and [float(r["detect_seconds"]) for r in rows[1:3]] == [0.0, 0.0]
    for lang, row in zip(LANGUAGES, rows):
        out = languages / "in" / f"face_{lang}_dubbed.mp4"
        assert row["output"] == str(out) and out.is_file()
        speech, dubbed = (media.load_audio(p) for p in (languages / "in" / f"{lang}.wav", out))
        assert abs(len(dubbed) - len(speech)) < 0.1 * 16000, lang  # its own speech: the three lengths differ
        assert int(row["frames"]) == round(len(speech) / 16000 * 25) == int(row["frames_edited"])
    assert len({int(r["frames"]) for r in rows[:3]}) == 3

    (languages / "in" / "face_fr_dubbed.mp4").unlink()  # a re-run dubs only what is missing, from the cached track
    assert run_batch(jobs, cfg, report=report) == 1
    rows = list(csv.DictReader(report.open()))
    assert [r["status"] for r in rows] == ["skipped", "done", "skipped", "failed"]
    assert float(rows[1]["detect_seconds"]) == 0.0 and len(calls) == 1


def test_duplicate_outputs_are_refused_before_any_model_loads(tmp_path, monkeypatch):
    import lipsync_cli.batch
    from lipsync_cli.batch import run_batch
    from lipsync_cli.config import DubConfig

    loads = []
    monkeypatch.setattr(lipsync_cli.batch, "load_for", lambda *a: loads.append(a))
    write_inputs(tmp_path, 4)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("video,audio,output\nv0.mp4,sub/a0.wav,out/x.mp4\nv1.mp4,sub/a1.wav,out/y.mp4\n"
                    "v2.mp4,sub/a2.wav,out/../out/x.mp4\nv3.mp4,sub/a3.wav,\n")
    with pytest.raises(InputError, match=r"rows 1, 3 all write .*x\.mp4; give each row its own output"):
        run_batch(jobs, DubConfig(device="cpu", quiet=True), shard=(1, 2))  # the check spans every shard
    assert loads == [] and not (tmp_path / "out").exists()
    same_default = tmp_path / "same.csv"  # blank outputs of one video and one audio stem: one name, refused too
    same_default.write_text("video,audio,output\nv0.mp4,sub/a0.wav,\nv0.mp4,sub/a0.wav,\n")
    with pytest.raises(InputError, match="rows 1, 2 all write"):
        read_jobs(same_default)


def test_sigint_before_and_during_the_batch_reports_every_row_and_the_same_command_resumes(languages, tmp_path,
                                                                                           monkeypatch, wav2lip_ckpt):
    """A real SIGINT (sent to this process, which runs the batch) during row 1, then during row 2 of the same batch,
    then the batch once more: every report lists every row with its state, no partial file is left, and the last
    run finishes the batch. In process: three CLI start-ups would triple the test's time."""
    import json
    import os
    import signal
    import threading
    import time

    from lipsync_cli.batch import run_batch
    from lipsync_cli.config import DubConfig, FaceConfig

    monkeypatch.setenv("LIPSYNC_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    jobs = tmp_path / "jobs.csv"  # the three languages: short rows, a row takes a few seconds
    jobs.write_text("video,audio,output\n" + "".join(f"{languages}/in/face.mp4,{languages}/in/{lang}.wav,out/o{k}.mp4\n"
                                                     for k, lang in enumerate(LANGUAGES, 1)))
    report = tmp_path / "report.json"
    cfg = DubConfig(model=str(wav2lip_ckpt), faces=FaceConfig(detector="dlib"), device="cpu", quiet=True)

    def interrupt_when(partial: Path) -> dict:
        def watch():
            deadline = time.monotonic() + 300
            while not partial.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt in the main thread, the batch's

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        with pytest.raises(KeyboardInterrupt):
            run_batch(jobs, cfg, report=report)
            time.sleep(10)  # not reached if the signal came mid-row; a batch that ended first still gets it here
        watcher.join()
        assert list(out.glob(".*")) == [], "a partial output was left behind"
        return {r["row"]: (r["status"], r["reason"]) for r in json.loads(report.read_text())}

    got = interrupt_when(out / ".o1.partial.mp4")
    assert got == {1: ("interrupted", "stopped mid-row"), 2: ("interrupted", "not started"),
                   3: ("interrupted", "not started")}
    assert list(out.iterdir()) == []
    got = interrupt_when(out / ".o2.partial.mp4")
    assert got == {1: ("done", ""), 2: ("interrupted", "stopped mid-row"), 3: ("interrupted", "not started")}
    assert [p.name for p in out.iterdir()] == ["o1.mp4"]
    assert run_batch(jobs, cfg, report=report) == 0
    assert [r["status"] for r in json.loads(report.read_text())] == ["skipped", "done", "done"]
    assert sorted(p.name for p in out.iterdir()) == ["o1.mp4", "o2.mp4", "o3.mp4"]
