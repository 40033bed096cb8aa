"""media/: probe, decode, audio and encode on real clips (../shared/media) and on clips made here with ffmpeg.

Probing reads the container with PyAV; where ffprobe is installed, its answer is the independent reference.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import ffprobe_streams, shared_path
from lipsync_cli import media
from lipsync_cli.errors import InputError, InternalError
from lipsync_cli.media import decode, streams, tools

RED = (255, 0, 0)


def ffmpeg(*args: str, exe: str | None = None) -> None:
    res = subprocess.run([exe or media.ffmpeg_exe(), "-y", "-v", "error", *args], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def encode_raw(path: Path, frames: list[np.ndarray], fps: str = "25", *extra: str) -> Path:
    """Encode RGB frames with plain ffmpeg (independent of VideoWriter); `extra` = output options."""
    h, w = frames[0].shape[:2]
    cmd = [media.ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-framerate", fps, "-i", "-", *extra, str(path)]
    res = subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), capture_output=True)
    assert res.returncode == 0, res.stderr.decode()
    return path


def corner_frame(w: int, h: int) -> np.ndarray:
    """Grey picture with a red block in the top-left corner only: shows any rotation or flip."""
    frame = np.full((h, w, 3), 90, np.uint8)
    frame[: h // 3, : w // 3] = RED
    return frame


def red_corner(frame: np.ndarray) -> str:
    """Which quadrant holds the red block: 'top-left', 'top-right', 'bottom-left' or 'bottom-right'."""
    h, w = frame.shape[:2]
    red = (frame[..., 0] > 180) & (frame[..., 1] < 80)
    ys, xs = np.nonzero(red)
    return ("top" if ys.mean() < h / 2 else "bottom") + "-" + ("left" if xs.mean() < w / 2 else "right")


def tone(path: Path, seconds: float, channels: str = "mono") -> Path:
    ffmpeg("-f", "lavfi", "-i", f"sine=f=300:d={seconds},aformat=channel_layouts={channels}", "-ar", "44100", str(path))
    return path


# --- ffmpeg_exe / probe ------------------------------------------------------------------------

def test_ffmpeg_exe_prefers_path_then_bundled_binary(monkeypatch):
    import imageio_ffmpeg

    monkeypatch.setattr(tools.shutil, "which", lambda name: f"/opt/bin/{name}")
    assert media.ffmpeg_exe() == "/opt/bin/ffmpeg"
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    assert media.ffmpeg_exe() == imageio_ffmpeg.get_ffmpeg_exe()
    assert subprocess.run([media.ffmpeg_exe(), "-version"], capture_output=True).returncode == 0


def test_probe_vfr_clip_averages_the_rate():
    info = media.probe(shared_path("media", "04_square700_frontal.mp4"))
    # declares 30 fps but holds 135 frames over 6.1 s with 1- and 2-frame steps
    assert info.is_vfr
    assert info.fps == Fraction(1350, 61)
    assert (info.n_frames, info.duration) == (135, pytest.approx(6.1))
    assert (info.width, info.height, info.rotation) == (700, 700, 0)
    assert info.has_video and info.has_audio and not info.is_image
    assert info.audio_duration == pytest.approx(6.107, abs=0.01)


@pytest.mark.parametrize("name, size, fps, frames", [
    ("02_portrait_1080x1920_hevc.mp4", (1080, 1920), 25, 250),  # HEVC portrait, coded upright (no rotation)
    ("05_turned_head_224_glasses.mp4", (224, 224), 25, 106),
    ("09_syncnet_reference_example.avi", (224, 224), 25, 317),
])
def test_probe_cfr_clips(name, size, fps, frames):
    info = media.probe(shared_path("media", name))
    assert (info.width, info.height) == size
    assert (info.fps, info.n_frames, info.is_vfr, info.rotation) == (Fraction(fps), frames, False, 0)
    assert info.duration == pytest.approx(frames / fps)
    assert info.pix_fmt == "yuv420p"


def test_probe_missing_streams():
    no_audio = media.probe(shared_path("media", "12_edge_video_no_audio_stream.avi"))
    assert (no_audio.has_video, no_audio.has_audio, no_audio.audio_duration) == (True, False, 0.0)
    assert (no_audio.width, no_audio.height, no_audio.n_frames) == (1280, 720, 125)
    no_video = media.probe(shared_path("media", "12b_edge_no_video_stream.avi"))
    assert (no_video.has_video, no_video.has_audio, no_video.n_frames) == (False, True, 0)
    assert no_video.audio_duration == pytest.approx(202880 / 16000)


def test_probe_rejects_missing_empty_and_non_media(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("not a video at all\n" * 50)
    cases = {"missing.mp4": "file not found", "empty.mp4": r"empty \(0 bytes\)", "notes.mp4": "not a video or audio file"}
    for name, message in cases.items():
        with pytest.raises(InputError, match=message) as err:
            media.probe(tmp_path / name)
        assert name in str(err.value) and "\n" not in str(err.value)


def test_probe_ignores_cover_art(tmp_path, face_image):
    song = tmp_path / "song.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=d=1", "-i", str(face_image), "-map", "0", "-map", "1", "-c:a", "aac",
           "-c:v", "png", "-disposition:v", "attached_pic", str(song))
    info = media.probe(song)
    assert (info.has_video, info.has_audio) == (False, True)
    assert len(media.load_audio(song)) == pytest.approx(16000, abs=1100)


def test_probe_needs_no_ffmpeg_on_path(monkeypatch):
    """The pip-only install: no system ffmpeg/ffprobe. PyAV probes by itself; decoding uses imageio-ffmpeg's binary."""
    clip = shared_path("media", "04_square700_frontal.mp4")
    reference = media.probe(clip)
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    assert media.probe(clip) == reference
    assert sum(1 for _ in media.iter_frames(clip, reference)) == 135


@pytest.mark.parametrize("name", ["02_portrait_1080x1920_hevc.mp4", "04_square700_frontal.mp4",
                                  "09_syncnet_reference_example.avi", "12b_edge_no_video_stream.avi"])
def test_stream_facts_agree_with_ffprobe(name):
    """ffprobe (another program, the system's libav) is the reference for what PyAV reads."""
    path = shared_path("media", name)
    reference = ffprobe_streams(path)
    facts = streams.read_container(path)
    for kind, got in (("video", facts.video), ("audio", facts.audio)):
        if kind not in reference:
            assert got is None
            continue
        want = reference[kind]
        assert (got.index, got.codec, got.time_base) == (want["index"], want["codec_name"],
                                                         Fraction(want["time_base"]))
        assert len(got.pts) == int(want["nb_read_packets"])
        if kind == "video":
            assert (got.width, got.height, got.pix_fmt) == (want["width"], want["height"], want["pix_fmt"])
            assert got.rate == Fraction(want["r_frame_rate"])


# --- rotation, pixel formats, still images -------------------------------------------------------

def rotated_clip(tmp_path: Path) -> Path:
    """A phone-like clip: 64x48 coded, display matrix 'rotate 90 degrees counter-clockwise'."""
    import imageio_ffmpeg

    coded = encode_raw(tmp_path / "coded.mp4", [corner_frame(64, 48)] * 5, "25", "-pix_fmt", "yuv420p")
    out = tmp_path / "phone.mp4"
    # -display_rotation exists from ffmpeg 6; the bundled imageio-ffmpeg binary always has it
    ffmpeg("-display_rotation", "90", "-i", str(coded), "-c", "copy", str(out), exe=imageio_ffmpeg.get_ffmpeg_exe())
    return out


def test_rotated_clip_decodes_upright(tmp_path):
    clip = rotated_clip(tmp_path)
    info = media.probe(clip)
    assert info.rotation == 270  # 90 counter-clockwise == 270 clockwise
    assert (info.width, info.height) == (48, 64)  # display size: swapped
    frames = list(media.iter_frames(clip, info))
    assert len(frames) == 5 and frames[0].shape == (64, 48, 3)
    # turning the picture 90 degrees counter-clockwise carries the top-left corner to the bottom-left
    assert red_corner(frames[0]) == "bottom-left"


def test_legacy_rotate_tag_agrees_with_decoded_pixels(tmp_path):
    coded = encode_raw(tmp_path / "coded.mp4", [corner_frame(64, 48)] * 3, "25", "-pix_fmt", "yuv420p")
    tagged = tmp_path / "tagged.mp4"
    res = subprocess.run([media.ffmpeg_exe(), "-y", "-v", "error", "-i", str(coded), "-c", "copy",
                          "-metadata:s:v:0", "rotate=90", str(tagged)], capture_output=True)
    info = media.probe(tagged)
    if res.returncode != 0 or info.rotation == 0:
        pytest.skip("this ffmpeg no longer turns the rotate tag into a display matrix")
    frame = next(iter(media.iter_frames(tagged, info)))
    assert frame.shape == (info.height, info.width, 3) == (64, 48, 3)
    expected = {90: "top-right", 270: "bottom-left"}[info.rotation]  # where a clockwise turn carries top-left
    assert red_corner(frame) == expected


@pytest.mark.parametrize("pix_fmt", ["yuv420p10le", "yuv444p"])
def test_high_bit_depth_and_444_decode_to_rgb24(tmp_path, pix_fmt):
    clip = encode_raw(tmp_path / f"{pix_fmt}.mp4", [corner_frame(96, 64)] * 4, "25",
                      "-c:v", "libx264", "-pix_fmt", pix_fmt, "-qp", "0")
    info = media.probe(clip)
    assert info.pix_fmt == pix_fmt
    frames = list(media.iter_frames(clip, info))
    assert len(frames) == 4 and frames[0].dtype == np.uint8 and frames[0].shape == (64, 96, 3)
    assert np.abs(frames[0].astype(int) - corner_frame(96, 64)).mean() < 3


def test_still_images_decided_by_content(tmp_path, face_image):
    jpg = tmp_path / "photo.jpg"
    ffmpeg("-i", str(face_image), str(jpg))
    disguised = tmp_path / "actually_png.mp4"
    shutil.copy(face_image, disguised)
    for path in (face_image, jpg, disguised):
        info = media.probe(path)
        assert (info.is_image, info.has_audio, info.n_frames, info.width, info.height) == (True, False, 1, 300, 300)
    clip = media.probe(encode_raw(tmp_path / "one_frame.mp4", [corner_frame(32, 32)], "25"))
    assert not clip.is_image  # a one-frame H.264 video is still a video
    pixels = media.read_image(disguised)
    import cv2

    assert np.array_equal(pixels, cv2.cvtColor(cv2.imread(str(face_image)), cv2.COLOR_BGR2RGB))  # png: exact
    assert [f.shape for f in media.iter_frames(jpg, media.probe(jpg))] == [(300, 300, 3)]


def test_jpeg_exif_orientation_is_applied(tmp_path):
    Image = pytest.importorskip("PIL.Image")  # pillow comes with scikit-image (test extras)
    photo = tmp_path / "phone_photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation 6: turn 90 degrees clockwise to display (a portrait phone shot)
    Image.fromarray(corner_frame(64, 48)).save(photo, exif=exif, quality=95)
    info = media.probe(photo)
    assert (info.is_image, info.rotation, info.width, info.height) == (True, 90, 48, 64)
    picture = media.read_image(photo)
    assert picture.shape == (64, 48, 3) and red_corner(picture) == "top-right"


# --- decoding -------------------------------------------------------------------------------------

def vfr_clip(tmp_path: Path) -> Path:
    """10 frames whose grey level is 20*index, shown at irregular times (units of 1/20 s): 0,1,3,4,6,7,9,10,12,13."""
    frames = [np.full((32, 32, 3), 20 * i, np.uint8) for i in range(10)]
    return encode_raw(tmp_path / "vfr.mp4", frames, "20", "-vf", "setpts=(N+floor(N/2))/(20*TB)",
                      "-fps_mode", "vfr", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", "-bf", "0")


def test_vfr_frames_are_resampled_on_the_timeline(tmp_path):
    clip = vfr_clip(tmp_path)
    info = media.probe(clip)
    assert info.is_vfr and info.n_frames == 10
    assert info.fps == Fraction(10) / Fraction(14, 20)  # 10 frames over 13 steps + one typical step
    got = [int(round(f.mean() / 20)) for f in media.iter_frames(clip, info, fps=Fraction(20))]
    # frame k (time k/20) shows the latest source frame whose timestamp is <= k
    assert got == [0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 7, 7, 8, 9]


def test_iter_frames_counts_and_rate_change():
    clip = shared_path("media", "05_turned_head_224_glasses.mp4")
    info = media.probe(clip)
    frames = list(media.iter_frames(clip, info))
    assert len(frames) == info.n_frames == 106
    assert frames[0].shape == (224, 224, 3) and frames[0].dtype == np.uint8
    frames[0][0, 0] = 0  # frames are writable arrays, not views of immutable bytes
    doubled = list(media.iter_frames(clip, info, fps=Fraction(50)))
    assert len(doubled) == 212
    assert np.array_equal(doubled[20], frames[10]) and np.array_equal(doubled[21], frames[10])


def test_clean_decode_one_frame_short_holds_the_last_picture():
    """ffmpeg versions differ by a frame in where the fps filter stops; a clean decode is padded to the probed count
    (at most END_SLACK_FRAMES), a larger shortfall is left alone."""
    clip = shared_path("media", "05_turned_head_224_glasses.mp4")
    info = media.probe(clip)
    longer = dataclasses.replace(info, duration=info.duration + 1 / 25)
    frames = list(media.iter_frames(clip, longer))
    assert len(frames) == 107 and np.array_equal(frames[-1], frames[-2])
    assert sum(1 for _ in media.iter_frames(clip, dataclasses.replace(info, duration=info.duration + 1))) == 106


def test_vfr_shared_clip_yields_n_frames():
    clip = shared_path("media", "04_square700_frontal.mp4")
    info = media.probe(clip)
    assert sum(1 for _ in media.iter_frames(clip, info)) == info.n_frames == 135


def test_closing_the_generator_kills_ffmpeg(monkeypatch):
    clip = shared_path("media", "02_portrait_1080x1920_hevc.mp4")
    started = []
    monkeypatch.setattr(decode, "spawn", lambda *a, **k: started.append(tools.spawn(*a, **k)) or started[-1])
    frames = media.iter_frames(clip, media.probe(clip))
    assert next(frames).shape == (1920, 1080, 3)  # portrait, as coded
    assert started[0].poll() is None
    frames.close()
    assert started[0].poll() is not None and started[0].stdout.closed


def test_truncated_video_decodes_what_is_there(tmp_path):
    src = shared_path("media", "05_turned_head_224_glasses.mp4")
    front = tmp_path / "front.mp4"  # index first (as most phones/streaming files): the data is cut, not the index
    ffmpeg("-i", str(src), "-c", "copy", "-movflags", "+faststart", str(front))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(front.read_bytes()[: front.stat().st_size // 2])
    info = media.probe(cut)
    frames = list(media.iter_frames(cut, info))
    assert 10 < len(frames) < 106 and len(frames) >= info.n_frames - 2
    assert all(f.shape == (224, 224, 3) for f in frames)
    index_at_end = tmp_path / "index_at_end.mp4"  # index lost with the tail: nothing is decodable
    index_at_end.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(InputError, match="not a video or audio file"):
        media.probe(index_at_end)


# --- audio ------------------------------------------------------------------------------------------

def test_load_audio_resamples_and_averages_channels(tmp_path):
    wav = shared_path("media", "04b_dub_audio_en_44k.wav")  # 44.1 kHz stereo
    speech = media.load_audio(wav)
    assert speech.dtype == np.float32 and speech.ndim == 1
    assert len(speech) == pytest.approx(media.probe(wav).audio_duration * 16000, abs=16)
    assert 0.05 < np.abs(speech).max() <= 1.0
    left_only = tmp_path / "left.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=f=300:d=1", "-af", "pan=stereo|c0=c0|c1=0*c0", str(left_only))
    peak_stereo = np.abs(media.load_audio(left_only)).max()
    mono = tone(tmp_path / "mono.wav", 1.0)
    assert peak_stereo == pytest.approx(np.abs(media.load_audio(mono)).max() / 2, rel=0.02)  # an average


def test_load_audio_from_video_and_no_audio_error():
    # exactly the container's 4.24 s: the AAC encoder's end padding is cut
    assert len(media.load_audio(shared_path("media", "05_turned_head_224_glasses.mp4"))) == 4.24 * 16000
    with pytest.raises(InputError, match=r"no audio stream in 12_edge_video_no_audio_stream\.avi \(pass a file"):
        media.load_audio(shared_path("media", "12_edge_video_no_audio_stream.avi"))


# --- encoding ---------------------------------------------------------------------------------------

def test_writer_roundtrip_with_audio(tmp_path):
    audio = tone(tmp_path / "tone.wav", 1.3)
    out = tmp_path / "out.mp4"
    fps = Fraction(30000, 1001)
    frame = corner_frame(160, 96)
    with media.VideoWriter(out, 160, 96, fps, audio=audio) as writer:
        for _ in range(50):  # 1.67 s of video for 1.3 s of audio: cut to the audio
            writer.write(frame)
    info = media.probe(out)
    facts = streams.read_container(out)
    assert (facts.video.codec, facts.video.pix_fmt, facts.audio.codec) == ("h264", "yuv420p", "aac")
    assert (info.width, info.height, info.fps) == (160, 96, fps)
    assert abs(info.duration - 1.3) <= 1 / fps and abs(info.audio_duration - 1.3) <= 1 / fps
    data = out.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart
    back = next(iter(media.iter_frames(out, info)))
    assert np.abs(back.astype(int) - frame).mean() < 2  # colours survive RGB -> yuv420p -> RGB
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "tone.wav"]


def test_writer_odd_size_pads_with_edge_pixels(tmp_path):
    y, x = np.mgrid[0:77, 0:101]
    frame = np.stack([x * 2, y * 3, 255 - x - y], axis=-1).astype(np.uint8)  # smooth: chroma subsampling is exact-ish
    out = tmp_path / "odd.mp4"
    with media.VideoWriter(out, 101, 77, Fraction(25)) as writer:
        for _ in range(3):
            writer.write(np.ascontiguousarray(frame))
    info = media.probe(out)
    assert (info.width, info.height, info.n_frames, info.has_audio) == (102, 78, 3, False)
    back = next(iter(media.iter_frames(out, info))).astype(int)
    assert np.abs(back[:77, :101] - frame).mean() < 4
    assert np.abs(back[:77, 101] - back[:77, 100]).mean() < 4  # repeated edge, not a black line
    assert np.abs(back[77, :101] - back[76, :101]).mean() < 4


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_writer_failure_leaves_nothing(tmp_path, error):
    out = tmp_path / "out.mp4"
    with pytest.raises(error):
        with media.VideoWriter(out, 64, 64, Fraction(25)) as writer:
            writer.write(corner_frame(64, 64))
            assert (tmp_path / ".out.partial.mp4").exists() or writer._proc.poll() is None
            raise error()
    assert writer._proc.poll() is not None
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_missing_folder_and_audio_without_sound(tmp_path):
    with pytest.raises(InputError, match="output folder .*nowhere does not exist"):
        media.VideoWriter(tmp_path / "nowhere" / "out.mp4", 64, 64, Fraction(25))
    with pytest.raises(InputError, match="no audio stream in 12_edge"):
        media.VideoWriter(tmp_path / "out.mp4", 64, 64, Fraction(25),
                          audio=shared_path("media", "12_edge_video_no_audio_stream.avi"))
    assert list(tmp_path.iterdir()) == []


def test_writer_disk_full_is_internal_error(tmp_path):
    """ffmpeg runs under a 64 KiB file-size limit (as if the disk filled up) while we feed it noise."""
    script = textwrap.dedent(f"""
        import resource, sys
        from fractions import Fraction
        import numpy as np
        from lipsync_cli.errors import InternalError
        from lipsync_cli.media import VideoWriter
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        noise = np.random.default_rng(0).integers(0, 255, (50, 240, 320, 3), dtype=np.uint8)
        try:
            with VideoWriter({str(tmp_path / 'out.mp4')!r}, 320, 240, Fraction(25)) as writer:
                for frame in noise:
                    writer.write(frame)
        except InternalError as err:
            print(err)
            sys.exit(err.exit_code)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == InternalError.exit_code, res.stderr
    assert "encoding out.mp4 failed" in res.stdout and len(res.stdout.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_writer_ffmpeg_error_carries_its_stderr(tmp_path):
    with pytest.raises(InternalError, match="encoding out.mp4 failed.*no-such-preset") as err:
        with media.VideoWriter(tmp_path / "out.mp4", 64, 64, Fraction(25), preset="no-such-preset") as writer:
            for _ in range(200):  # ffmpeg exits at start-up; writing notices the broken pipe, or closing does
                writer.write(corner_frame(64, 64))
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_atomic_output(tmp_path):
    target = tmp_path / "model.pt"
    with media.atomic_output(target) as tmp:
        tmp.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    with pytest.raises(ValueError):
        with media.atomic_output(target) as tmp:
            tmp.write_text("half")
            raise ValueError
    assert target.read_text() == "done" and sorted(os.listdir(tmp_path)) == ["model.pt"]
    with pytest.raises(InputError, match="does not exist"):
        with media.atomic_output(tmp_path / "missing" / "x.pt"):
            pass
