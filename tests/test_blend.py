"""The lower-face mask and paste-back, tested directly on a real face (before any encoding)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import astronaut_face

from lipsync_cli import blend
from lipsync_cli.faces.crop import crop, pixel_box


@pytest.fixture(scope="module")
def face():
    """The astronaut photo with its dlib box (padded like a dub) and 68 landmarks."""
    from lipsync_cli.faces import get_detector

    image = astronaut_face()
    found = get_detector("dlib").detect([image])[0][0]
    box = found.box + np.array([0, 0, 0, 10], np.float32)
    return image, box, found.landmarks


def _rim_and_inside(mask, box):
    x1, y1, x2, y2 = pixel_box(box, mask.shape)
    outside = np.ones(mask.shape, bool)
    outside[y1:y2, x1:x2] = False
    return outside, (x1, y1, x2, y2)


@pytest.mark.parametrize("with_landmarks", [True, False])
def test_mask_is_soft_lower_face_and_zero_outside_the_box(face, with_landmarks):
    image, box, landmarks = face
    mask = blend.lower_face_mask(box, landmarks if with_landmarks else None, image.shape)
    assert mask.shape == image.shape[:2] and mask.dtype == np.float32
    assert mask.min() >= 0 and mask.max() <= 1
    outside, (x1, y1, x2, y2) = _rim_and_inside(mask, box)
    assert not mask[outside].any()
    assert mask[y1, x1] == 0 and mask[y1, x2 - 1] == 0  # top corners of the box
    edges = (mask[y1:y2, x1], mask[y1:y2, x2 - 1], mask[y1, x1:x2], mask[y2 - 1, x1:x2])
    assert not any(edge.any() for edge in edges)  # the box outline never shows
    mouth = np.round(landmarks[62:67:4].mean(axis=0)).astype(int)  # between the inner lips
    assert mask[mouth[1], mouth[0]] > 0.95
    eyes = np.round(landmarks[36:48].mean(axis=0)).astype(int)
    assert mask[eyes[1], eyes[0]] == 0  # the upper face is never touched
    # soft, not a hard shape: a band of values strictly between 0 and 1 around the edge, several pixels wide
    soft = (mask > 0) & (mask < 1)
    assert soft.sum() > 0.3 * (mask > 0).sum()
    row = mask[mouth[1], x1:x2]
    assert len(np.unique(np.round(row[row > 0], 3))) > 5


def test_nan_landmarks_fall_back_to_the_ellipse(face):
    image, box, _ = face
    nan = np.full((68, 2), np.nan, np.float32)
    np.testing.assert_array_equal(blend.lower_face_mask(box, nan, image.shape),
                                  blend.lower_face_mask(box, None, image.shape))


def test_feather_widens_the_soft_edge(face):
    image, box, landmarks = face
    narrow = blend.lower_face_mask(box, landmarks, image.shape, feather=0.03)
    wide = blend.lower_face_mask(box, landmarks, image.shape, feather=0.15)
    band = lambda m: ((m > 0.01) & (m < 0.99)).sum()  # noqa: E731
    assert band(wide) > 2 * band(narrow)


def test_predicted_mask_only_narrows(face):
    image, box, landmarks = face
    base = blend.lower_face_mask(box, landmarks, image.shape)
    left_half = np.zeros((96, 96), np.float32)
    left_half[:, :48] = 1
    narrowed = blend.lower_face_mask(box, landmarks, image.shape, predicted=left_half)
    assert (narrowed <= base + 1e-6).all()
    x1, _, x2, _ = pixel_box(box, image.shape)
    assert narrowed[:, (x1 + x2) // 2 + 10:].max() < 0.05 and narrowed[:, : (x1 + x2) // 2 - 10].max() > 0.9


def test_paste_back_changes_only_pixels_inside_the_mask(face):
    image, box, landmarks = face
    before = image.copy()
    generated = np.full((96, 96, 3), (0, 255, 0), np.uint8)  # an obvious green mouth
    mask = blend.lower_face_mask(box, landmarks, image.shape)
    out = blend.paste_back(image, generated, box, mask)
    np.testing.assert_array_equal(image, before)  # pure: the input frame is not modified
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[mask == 0], image[mask == 0])  # bit-exact where the mask is 0
    full = mask > 0.999
    assert full.any() and (np.abs(out[full].astype(int) - (0, 255, 0)) <= 1).all()
    half = (mask > 0.4) & (mask < 0.6)
    green = out[half, 1].astype(int) - image[half, 1].astype(int)
    assert (green > 0).mean() > 0.9  # partly blended in the soft band


def test_paste_back_with_a_zero_weight_returns_the_frame(face):
    image, box, landmarks = face
    mask = blend.lower_face_mask(box, landmarks, image.shape) * 0.0  # the pipeline's edit weight 0
    out = blend.paste_back(image, crop(image, box, 96)[::-1].copy(), box, mask)
    np.testing.assert_array_equal(out, image)


def test_paste_back_of_its_own_crop_is_close_to_the_frame(face):
    """crop → paste_back lands where it was cut from (an offset or flipped mapping would not)."""
    image, box, landmarks = face
    mask = blend.lower_face_mask(box, landmarks, image.shape)
    out = blend.paste_back(image, crop(image, box, 96), box, mask)
    inside = mask > 0.5
    assert np.abs(out[inside].astype(int) - image[inside].astype(int)).mean() < 8
    shifted = blend.paste_back(image, crop(image, box + np.float32(12), 96), box, mask)
    assert np.abs(shifted[inside].astype(int) - image[inside].astype(int)).mean() > 12
