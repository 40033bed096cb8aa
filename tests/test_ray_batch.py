"""`lipsync dub --jobs JOBS.csv --ray`: real rows on a local Ray cluster (2 CPUs, 2 workers) give the single-process
batch's outputs with models loaded once per worker; a broken row fails alone; a worker SIGKILLed mid-row has its row
retried by another worker process with no partial file left; re-runs skip finished rows; SIGINT stops cleanly;
without Ray installed `--ray` is one line and exit 2, and nothing else imports Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from cli_utils import lipsync_in_process
from conftest import SENTENCE, make_speech, stop_with, wait_for

from lipsync_cli.batch import Job, Outcome, write_report
from lipsync_cli.config import RayConfig
from lipsync_cli.errors import UsageError
from lipsync_cli.ray_batch import plan_workers

# Kept small: the cluster lives in this test process, and 3 other engineers share the machine's 2 cores.
CLUSTER = dict(num_cpus=2, num_gpus=0, include_dashboard=False, object_store_memory=80 << 20,
               logging_level="ERROR", log_to_driver=False)


@pytest.fixture(scope="module")
def ray_address():
    """One local cluster for the whole module; each CLI run is a separate driver joining it via RAY_ADDRESS."""
    ray = pytest.importorskip("ray", reason='Ray is the optional extra: pip install "lipsync-cli[ray]"')
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")  # before init: the cluster's processes inherit it
    ray.init(**CLUSTER)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def media(tmp_path_factory, face_clip) -> Path:
    """in/face.mp4 (3 s real face), in/hi.wav (~1 s), in/long.wav (~6 s), in/notes.mp4 (a text file)."""
    root = tmp_path_factory.mktemp("ray_media")
    (root / "in").mkdir()
    shutil.copy(face_clip, root / "in" / "face.mp4")
    make_speech(root / "in" / "hi.wav", "Hello there.")
    make_speech(root / "in" / "long.wav", SENTENCE)
    (root / "in" / "notes.mp4").write_text("not a video\n")
    return root


def job_file(root: Path, name: str, rows: list[tuple[str, str]], out: str) -> Path:
    """Rows (video, audio) → `name`.csv writing out/<out>/o<k>.mp4; returns the job file."""
    (root / "out" / out).mkdir(parents=True)
    lines = ["video,audio,output"] + [f"in/{v},in/{a},out/{out}/o{k}.mp4" for k, (v, a) in enumerate(rows, 1)]
    path = root / f"{name}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(jobs: Path, model: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lipsync_cli", "dub", "--jobs", str(jobs), "--model", str(model),
            "--detector", "dlib", "--device", "cpu", *extra]


def ray_args(report: Path, workers: int = 2) -> list[str]:
    return ["--ray", "--workers", str(workers), "--cpus-per-worker", "1", "--report", str(report)]


def env(address: str, **extra) -> dict:
    return dict(os.environ, RAY_ADDRESS=address, RAY_DISABLE_USAGE_STATS="1", **extra)


@pytest.fixture(scope="module", autouse=True)
def face_track_cache(tmp_path_factory):
    """Face tracks are cached in this module's own folder (the driver picks it for its workers), never in the
    user's cache; the drivers started with env() inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("face_tracks")
        patch.setenv("LIPSYNC_CACHE_DIR", str(folder))
        yield folder


def report_rows(path: Path) -> dict[int, dict]:
    return {r["row"]: r for r in json.loads(path.read_text())}


def decoded(path: Path) -> np.ndarray:
    from lipsync_cli import media

    return np.stack(list(media.iter_frames(path, media.probe(path))))


def partials(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if "partial" in p.name]


def test_ray_batch_matches_single_process_loads_models_once_and_resumes(ray_address, media, wav2lip_ckpt, capfd):
    rows = [("face.mp4", "hi.wav")] * 2 + [("notes.mp4", "hi.wav")] + [("face.mp4", "hi.wav")]
    jobs = job_file(media, "four", rows, "ray")
    report = media / "ray.json"
    start = time.monotonic()
    first = subprocess.run(cli(jobs, wav2lip_ckpt, *ray_args(report)), capture_output=True, text=True,
                           env=env(ray_address), timeout=600)
    took = time.monotonic() - start
    assert first.returncode == 1, first.stderr  # row 3 failed, the others did not
    assert "Traceback" not in first.stderr
    got = report_rows(report)
    assert [got[n]["status"] for n in range(1, 5)] == ["done", "done", "failed", "done"], first.stderr
    assert "not a video" in got[3]["reason"] and "row 3 failed: not a video" in first.stderr
    done = [got[n] for n in (1, 2, 4)]
    # Loaded once per worker: every row of a worker saw the same single load, and both workers took rows.
    assert all(r["generator_loads"] == 1 and r["detector_loads"] == 1 and r["attempts"] == 1 for r in done), done
    assert len({r["worker"] for r in got.values()}) == 2, got
    assert max(Counter(r["worker"] for r in got.values()).values()) >= 2, got  # a worker reused its loaded models
    assert all(r["frames"] == r["frames_edited"] > 20 and r["seconds"] > 0 for r in done), done
    print(f"ray batch of 4 rows on 2 workers: {took:.1f} s")

    single_jobs = job_file(media, "four_single", rows, "single")
    single_report = media / "single.csv"
    single = lipsync_in_process(capfd, *cli(single_jobs, wav2lip_ckpt, "--report", str(single_report))[3:])
    assert single.returncode == 1, single.stderr
    import csv

    single_rows = list(csv.DictReader(single_report.open()))
    assert [r["status"] for r in single_rows] == ["done", "done", "failed", "done"]
    assert len({r["worker"] for r in single_rows}) == 1 and {r["generator_loads"] for r in single_rows} == {"1"}
    for k in (1, 2, 4):
        ours, theirs = decoded(media / "out" / "ray" / f"o{k}.mp4"), decoded(media / "out" / "single" / f"o{k}.mp4")
        assert ours.shape == theirs.shape and np.abs(ours.astype(int) - theirs).mean() < 0.5, k
    assert sorted(p.name for p in (media / "out" / "ray").iterdir()) == ["o1.mp4", "o2.mp4", "o4.mp4"]

    mtimes = {p.name: p.stat().st_mtime_ns for p in (media / "out" / "ray").iterdir()}
    again = subprocess.run(cli(jobs, wav2lip_ckpt, *ray_args(report)), capture_output=True, text=True,
                           env=env(ray_address), timeout=600)
    assert again.returncode == 1, again.stderr
    got = report_rows(report)
    assert [got[n]["status"] for n in range(1, 5)] == ["skipped", "skipped", "failed", "skipped"]
    assert "row 1 skipped: output exists" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in (media / "out" / "ray").iterdir()} == mtimes


def test_three_languages_of_one_video_on_two_workers_share_one_detection(ray_address, media, wav2lip_ckpt):
    """Blank outputs: one distinct file per language, each with its own speech; the two workers start two rows of
    the same video at once, and still only one of them detects (the other waits for its track)."""
    from lipsync_cli import media as av_media

    root = media / "langs"
    root.mkdir()
    shutil.copy(media / "in" / "face.mp4", root / "face.mp4")
    speech = {"en": "Hello there, my friend.", "fr": "Bonjour mon ami, comment vas tu?", "de": "Guten Tag."}
    for lang, text in speech.items():
        make_speech(root / f"{lang}.wav", text)
    jobs = root / "jobs.csv"
    jobs.write_text("video,audio,output\n" + "".join(f"face.mp4,{lang}.wav,\n" for lang in speech))
    report = root / "report.json"
    cache = root / "cache"  # its own: the module's other tests have cached this video's track already
    proc = subprocess.run(cli(jobs, wav2lip_ckpt, *ray_args(report)), capture_output=True, text=True,
                          env=env(ray_address, LIPSYNC_CACHE_DIR=str(cache)), timeout=600)
    assert proc.returncode == 0, proc.stderr
    got = report_rows(report)
    assert [got[n]["status"] for n in (1, 2, 3)] == ["done"] * 3, got
    assert len({r["worker"] for r in got.values()}) == 2, got  # both workers dubbed
    assert sorted(r["detect_seconds"] > 0 for r in got.values()) == [False, False, True], got  # one detection
    assert len(list(cache.glob("face-tracks/*.npz"))) == 1
    for n, lang in enumerate(speech, 1):
        out = root / f"face_{lang}_dubbed.mp4"
        assert got[n]["output"] == str(out)
        own, dubbed = (av_media.load_audio(p) for p in (root / f"{lang}.wav", out))
        assert abs(len(dubbed) - len(own)) < 0.1 * 16000, lang
    assert len({got[n]["frames"] for n in (1, 2, 3)}) == 3 and partials(root) == []


def ffmpeg_writing(partial: Path):
    """The pid of the ffmpeg writing `partial` (its command line names it), or None."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(partial).encode() in args:
            return int(proc.name)
    return None


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state, past the (comm) that may hold spaces


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker through /proc")
def test_worker_killed_mid_row_is_retried_elsewhere_without_partial_files(ray_address, media, wav2lip_ckpt):
    jobs = job_file(media, "kill", [("face.mp4", "long.wav")] + [("face.mp4", "hi.wav")] * 3, "kill")
    report = media / "kill.json"
    proc = subprocess.Popen(cli(jobs, wav2lip_ckpt, *ray_args(report)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env(ray_address))
    # Row 1 (the ~6 s one) is being encoded: its ffmpeg's parent is the worker dubbing it. SIGKILL: no cleanup runs.
    target = media / "out" / "kill" / ".o1.partial.mp4"
    ffmpeg = wait_for(lambda: target.exists() and ffmpeg_writing(target), proc)
    victim = parent_of(ffmpeg)
    os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "row 1: its worker died" in err and "retrying (attempt 2 of 3)" in err, err
    got = report_rows(report)
    assert all(r["status"] == "done" for r in got.values()), got
    assert got[1]["attempts"] == 2 and not got[1]["worker"].endswith(f":{victim}"), got[1]
    assert sorted(p.name for p in (media / "out" / "kill").iterdir()) == ["o1.mp4", "o2.mp4", "o3.mp4", "o4.mp4"]
    assert partials(media) == []
    # The retried output is whole: every frame of the long speech, decodable to the end.
    assert decoded(media / "out" / "kill" / "o1.mp4").shape[0] == got[1]["frames"] > 100


def test_sigint_stops_the_batch_cleanly_and_a_rerun_resumes(ray_address, media, wav2lip_ckpt):
    """One worker (the stop path is the driver's): row 1 done, row 2 mid-encode, row 3 never started."""
    jobs = job_file(media, "stop", [("face.mp4", "hi.wav")] + [("face.mp4", "long.wav")] * 2, "stop")
    report = media / "stop.json"
    proc = subprocess.Popen(cli(jobs, wav2lip_ckpt, *ray_args(report, workers=1)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env(ray_address))
    out = media / "out" / "stop"
    wait_for(lambda: (out / "o1.mp4").exists() and partials(out), proc)  # row 1 done, a long row mid-encode
    err = stop_with(proc, signal.SIGINT)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted: rows finished: 1" in err and err.strip().splitlines()[-1].startswith("error: interrupted")
    got = report_rows(report)
    assert sorted(got) == [1, 2, 3], got  # every row, the interrupted ones too
    assert got[1]["status"] == "done" and "interrupted" in {r["status"] for r in got.values()}, got
    finished = {n for n, r in got.items() if r["status"] == "done"}
    assert sorted(p.name for p in out.iterdir()) == sorted(f"o{n}.mp4" for n in finished)
    assert partials(media) == []

    again = subprocess.run(cli(jobs, wav2lip_ckpt, *ray_args(report, workers=1)), capture_output=True, text=True,
                           env=env(ray_address), timeout=600)
    assert again.returncode == 0, again.stderr
    got = report_rows(report)
    assert all(got[n]["status"] == "skipped" for n in finished) and all(
        r["status"] == "done" for n, r in got.items() if n not in finished), got
    assert partials(media) == []


def test_sigterm_takes_the_same_clean_path(ray_address, media, wav2lip_ckpt):
    """ray.init replaces the driver's SIGTERM handler; the CLI's must be back, so SIGTERM also removes partials."""
    jobs = job_file(media, "term", [("face.mp4", "long.wav")] * 2, "term")
    proc = subprocess.Popen(cli(jobs, wav2lip_ckpt, *ray_args(media / "term.json", workers=1)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env(ray_address))
    out = media / "out" / "term"
    wait_for(lambda: partials(out), proc)
    err = stop_with(proc, signal.SIGTERM)
    assert proc.returncode == 143, err
    assert "interrupted: rows finished: none" in err and "error: terminated (SIGTERM)" in err, err
    assert partials(media) == [] and list(out.iterdir()) == []


def test_bad_model_fails_once_before_any_row(ray_address, media, tmp_path):
    """A corrupt --model is one error with its exit code, raised by the workers' load, not a failure per row."""
    model = tmp_path / "bad.pth"
    model.write_bytes(b"junk")
    jobs = job_file(media, "badmodel", [("face.mp4", "hi.wav")] * 3, "badmodel")
    proc = subprocess.run(cli(jobs, model, "--ray", "--workers", "2", "--cpus-per-worker", "1"), capture_output=True,
                          text=True, env=env(ray_address), timeout=600)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "bad.pth" in lines[0], proc.stderr
    assert list((media / "out" / "badmodel").iterdir()) == []


def test_ray_missing_is_one_line_exit_2_and_plain_batch_never_imports_it(tmp_path):
    shim = tmp_path / "shim" / "ray"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError(\"No module named 'ray' (test shim)\")\n")
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("video,audio,output\nv.mp4,a.wav,o.mp4\n")
    (tmp_path / "o.mp4").write_bytes(b"done earlier")  # the plain batch below has nothing to dub
    path = os.pathsep.join([str(tmp_path / "shim"), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "lipsync_cli", "dub", "--jobs", str(jobs), "--ray"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=path))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and 'pip install "lipsync-cli[ray]"' in lines[0], lines
    code = ("import sys\nfrom lipsync_cli.cli import main\n"
            f"try:\n    main(['dub', '--jobs', {str(jobs)!r}, '-q'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "assert 'ray' not in sys.modules, 'the plain batch imported ray'\n")
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr


@pytest.mark.parametrize("args, needle", [
    (["--jobs", "j.csv", "--workers", "2"], "only apply with --ray"),
    (["--jobs", "j.csv", "--ray-address", "local"], "only apply with --ray"),
    (["a.mp4", "b.wav", "--ray"], "--ray only applies with --jobs"),
    (["a.mp4", "b.wav", "--report", "r.csv"], "--report only applies with --jobs"),
    (["--jobs", "j.csv", "--report", "r.txt"], "--report must end in .csv or .json"),
])
def test_ray_usage_errors_are_one_line_exit_2(tmp_path, args, needle):
    (tmp_path / "j.csv").write_text("video,audio,output\n")
    proc = subprocess.run([sys.executable, "-m", "lipsync_cli", "dub", *args], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_unreachable_cluster_is_one_line_exit_1(tmp_path):
    import socket

    pytest.importorskip("ray", reason='Ray is the optional extra: pip install "lipsync-cli[ray]"')

    with socket.socket() as free:  # a port nobody listens on once closed
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("video,audio,output\nv.mp4,a.wav,o.mp4\n")
    for name in ("v.mp4", "a.wav"):  # readable inputs: the row passes the up-front check and needs the cluster
        (tmp_path / name).write_bytes(b"\0")
    proc = subprocess.run([sys.executable, "-m", "lipsync_cli", "dub", "--jobs", str(jobs), "--ray",
                           "--ray-address", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot reach the Ray cluster at 127.0.0.1:{port}"), lines


@pytest.mark.parametrize("resources, cfg, device, rows, expected", [
    ({"GPU": 8, "CPU": 64}, RayConfig(), "auto", 100, (8, 1.0, 1.0)),  # one worker per GPU
    ({"GPU": 8, "CPU": 64}, RayConfig(gpus_per_worker=0.5), "auto", 100, (16, 1.0, 0.5)),
    ({"GPU": 3, "CPU": 64}, RayConfig(gpus_per_worker=1 / 3), "cuda", 100, (9, 1.0, 1 / 3)),
    ({"GPU": 8, "CPU": 64}, RayConfig(workers=3), "auto", 100, (3, 1.0, 1.0)),
    ({"GPU": 8, "CPU": 64}, RayConfig(), "auto", 2, (2, 1.0, 1.0)),  # never more workers than rows
    ({"GPU": 8, "CPU": 64}, RayConfig(), "cpu", 100, (16, 4.0, 0.0)),  # --device cpu ignores the GPUs
    ({"CPU": 16}, RayConfig(), "auto", 100, (4, 4.0, 0.0)),  # no GPU: one worker per 4 cores
    ({"CPU": 2}, RayConfig(), "auto", 100, (1, 2.0, 0.0)),  # fewer cores than a worker wants: one, on all of them
    ({"CPU": 2}, RayConfig(cpus_per_worker=1), "auto", 100, (2, 1.0, 0.0)),
])
def test_plan_workers(resources, cfg, device, rows, expected):
    plan = plan_workers(resources, cfg, device, rows)
    assert (plan.count, plan.num_cpus, plan.num_gpus) == pytest.approx(expected)


def test_plan_workers_rejects_more_gpus_per_worker_than_the_cluster_has():
    with pytest.raises(UsageError, match="--gpus-per-worker 2"):
        plan_workers({"GPU": 1, "CPU": 8}, RayConfig(gpus_per_worker=2), "auto", 10)


def test_report_csv_and_json_hold_every_row(tmp_path):
    job = Job(2, tmp_path / "v.mp4", tmp_path / "a.wav", tmp_path / "o.mp4")
    outcomes = [Outcome(job, "failed", "no face, says ffmpeg, \"quoted\"", seconds=1.23456, attempts=1, worker="h:1"),
                Outcome(Job(1, job.video, job.audio, tmp_path / "p.mp4"), "done", seconds=2.0, frames=25,
                        frames_edited=20, attempts=1, worker="h:1", generator_loads=1, detector_loads=1)]
    write_report(tmp_path / "r.json", outcomes)
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [r["row"] for r in rows] == [1, 2]  # job-file order
    assert rows[1]["reason"] == "no face, says ffmpeg, \"quoted\"" and rows[1]["seconds"] == 1.235
    assert rows[0]["frames_edited"] == 20 and rows[0]["output"] == str(tmp_path / "p.mp4")
    write_report(tmp_path / "r.csv", outcomes)
    import csv

    back = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [r["status"] for r in back] == ["done", "failed"] and back[1]["reason"] == rows[1]["reason"]
    assert partials(tmp_path) == []


class FakeRay:
    """Just what Scheduler calls: workers answer at once; a row in `deadly` kills whichever worker runs it."""

    class exceptions:
        class RayError(Exception):
            pass

        class ActorUnavailableError(RayError):
            pass

    def wait(self, refs, num_returns, timeout):
        return refs[:1], refs[1:]

    def get(self, ref):
        if isinstance(ref.value, Exception):
            raise ref.value
        return ref.value

    def kill(self, worker, no_restart):
        pass


class Ref:
    """Hashable like an ObjectRef (by identity), holding the call's result or the error it raises."""

    def __init__(self, value):
        self.value = value


class Method:
    def __init__(self, fn):
        self.remote = lambda *args: Ref(fn(*args))


class FakeWorker:
    """Answers at once; a row in `deadly` kills it (only the first time with `once`), after which its next
    `restarting` calls find it unavailable, as Ray's calls on an actor that is being restarted do."""

    def __init__(self, deadly: set[int], restarting: int = 0, once: bool = False):
        self.deadly, self.restarting, self.once = set(deadly), restarting, once
        self.rows, self.loads, self.unavailable = [], 0, 0
        self.dub, self.load = Method(self._dub), Method(self._load)

    def _dub(self, job: Job, attempt: int):
        if self.unavailable:
            self.unavailable -= 1
            return FakeRay.exceptions.ActorUnavailableError("restarting")
        self.rows.append(job.row)
        if job.row in self.deadly:
            self.unavailable = self.restarting
            if self.once:
                self.deadly.discard(job.row)
            return FakeRay.exceptions.RayError("ActorDiedError")
        return Outcome(job, "done", attempts=attempt)

    def _load(self):
        if self.unavailable:
            self.unavailable -= 1
            return FakeRay.exceptions.ActorUnavailableError("restarting")
        self.loads += 1
        return "fake:1"


def fake_jobs(tmp_path: Path, n: int) -> list[Job]:
    return [Job(k, tmp_path / "v.mp4", tmp_path / "a.wav", tmp_path / f"o{k}.mp4") for k in range(1, n + 1)]


def run_scheduler(workers, jobs, retries):
    from lipsync_cli.ray_batch import Scheduler

    said = []
    scheduler = Scheduler(FakeRay(), workers, jobs, retries, said.append)
    while scheduler.busy():
        scheduler.step(0)
    return {o.job.row: o for o in scheduler.outcomes}, said


def test_a_row_that_kills_every_worker_fails_after_the_retries_and_the_rest_complete(tmp_path):
    from lipsync_cli.media.atomic import partial_path

    jobs = fake_jobs(tmp_path, 4)
    partial_path(jobs[1].output).write_bytes(b"left by a killed ffmpeg")
    workers = [FakeWorker({2}), FakeWorker({2})]
    got, said = run_scheduler(workers, jobs, retries=2)
    assert [got[k].status for k in (1, 2, 3, 4)] == ["done", "failed", "done", "done"]
    assert got[2].attempts == 3 and "died 3 times" in got[2].reason
    assert sum(w.rows.count(2) for w in workers) == 3  # 1 try + 2 retries, then no more
    assert [line.split(" (attempt ")[1] for line in said] == ["2 of 3)", "3 of 3)"]
    assert not partial_path(jobs[1].output).exists()


def test_a_restarting_worker_gets_rows_only_once_it_answers(tmp_path, monkeypatch):
    """Calls on a worker Ray is still restarting fail at once: they must not use up the retries of a row."""
    import lipsync_cli.ray_batch

    monkeypatch.setattr(lipsync_cli.ray_batch, "REVIVE_WAIT_S", 0.0)
    jobs = fake_jobs(tmp_path, 3)
    worker = FakeWorker({1}, restarting=3, once=True)
    got, said = run_scheduler([worker], jobs, retries=1)
    assert [got[k].status for k in (1, 2, 3)] == ["done", "done", "done"], got
    assert got[1].attempts == 2 and worker.rows == [1, 1, 2, 3] and worker.loads == 1
    assert len(said) == 1


def test_rows_are_failed_when_no_worker_is_left(tmp_path):
    jobs = fake_jobs(tmp_path, 3)
    worker = FakeWorker({1})
    got, _ = run_scheduler([worker], jobs, retries=0)  # no retry, no restart: the one worker is gone after row 1
    assert [got[k].status for k in (1, 2, 3)] == ["failed", "failed", "failed"]
    assert worker.rows == [1] and "no Ray worker left" in got[2].reason and got[3].attempts == 0
