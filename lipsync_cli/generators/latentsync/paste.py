"""LatentSync's mask and paste-back: the fixed mouth mask, the surrounding pixels pasted over the decode,
the inverse warp of the 3:4 crop into the frame through an eroded, blurred crop mask.

Reference README steps 8, 13 and 14. The mask is built once per resolution; restore() is a pure
function of (frame, face, matrix). Pixels outside the warped crop's footprint are the frame's own:
the restore runs only on the footprint's bounding box (plus the blur's reach), which is the same
arithmetic as upstream's whole-frame version where the mask is zero.
"""

from __future__ import annotations

import math

import numpy as np

from lipsync_cli.generators.latentsync import align

LATENT_SCALE = 8  # VAE downsampling: the UNet's mask channel is the mask at R/8


def model_mask(mask_png: np.ndarray, resolution: int) -> np.ndarray:
    """(256, 256) uint8 mask.png channel → (R, R) float64 in [0, 1], 1 = keep: Lanczos on the uint8 image
    (which saturates, so the soft edge stays in [0, 1]), then / 255."""
    import cv2

    return cv2.resize(mask_png, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4) / 255.0


def latent_mask(mask: np.ndarray) -> np.ndarray:
    """(R, R) → (R/8, R/8) float32: nearest sample (every 8th pixel), so not binary."""
    return mask[::LATENT_SCALE, ::LATENT_SCALE].astype(np.float32)


def pixels(faces: np.ndarray):
    """(B, R, R, 3) uint8 RGB → (B, 3, R, R) float32 torch in [-1, 1]."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(faces)).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.5


def masked_pixels(pix, mask: np.ndarray):
    """(B, 3, R, R) float32 pixels · (R, R) float64 mask → float64 (upstream multiplies in float64)."""
    import torch

    return pix.double() * torch.from_numpy(mask)


def surround(decoded, pix, mask: np.ndarray):
    """decoded (B, 3, R, R) · (1 − mask) + the input pixels · mask, float32: only the masked mouth is new."""
    import torch

    m = torch.from_numpy(mask).to(decoded.device, torch.float32)
    return decoded.float() * (1 - m) + pix.to(decoded.device).float() * m


def crop_face(face, resolution: int):
    """(3, R, R) float in [-1, 1] → (crop_h, crop_w, 3) float32 numpy: bicubic with antialias, the square
    stretched back to 3:4 (torchvision's resize, as upstream)."""
    import torch

    w, h = align.crop_size(resolution)
    out = torch.nn.functional.interpolate(face[None].float(), size=(h, w), mode="bicubic", align_corners=False,
                                          antialias=True)
    return out[0].permute(1, 2, 0).cpu().numpy()


def restore(frame: np.ndarray, face_crop: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """frame (H, W, 3) uint8 RGB, face_crop (h, w, 3) float32 in [-1, 1] (crop_face), matrix (2, 3) frame →
    crop → (H, W, 3) uint8 RGB frame with the face pasted back."""
    import cv2

    h_crop, w_crop = face_crop.shape[:2]
    inv = cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))
    x0, y0, x1, y1 = _footprint(inv, (w_crop, h_crop), frame.shape, margin=_blur_reach(inv, w_crop, h_crop) + 4)
    local = inv.copy()
    local[:, 2] -= (x0, y0)  # crop → box pixels
    size = (x1 - x0, y1 - y0)
    face = (align.warp(face_crop, local, size) / 2 + 0.5).clip(0, 1) * 255
    cover = align.warp(np.ones((h_crop, w_crop, 1), np.float32), local, size, fill=0.0)[:, :, 0]
    eroded = cv2.erode(cover, np.ones((2, 2), np.uint8), anchor=(1, 1))  # kornia's 2×2 erosion, origin (1, 1)
    w_edge = int(math.sqrt(eroded.sum())) // 20
    center = cv2.erode(eroded, np.ones((2 * w_edge, 2 * w_edge), np.uint8)) if w_edge else eroded
    k = 2 * w_edge + 1
    soft = cv2.GaussianBlur(center, (k, k), 0.3 * ((k - 1) * 0.5 - 1) + 0.8,
                            borderType=cv2.BORDER_REFLECT_101)[:, :, None]
    box = frame[y0:y1, x0:x1].astype(np.float32)
    out = frame.copy()
    out[y0:y1, x0:x1] = (soft * (eroded[:, :, None] * face) + (1 - soft) * box).astype(np.uint8)  # truncation
    return out


def _blur_reach(inv: np.ndarray, w: int, h: int) -> int:
    """Pixels the erosion and blur can reach beyond the footprint (bounded by the footprint's area)."""
    area = abs(np.linalg.det(inv[:, :2])) * w * h
    return 2 * (int(math.sqrt(area) + 1) // 20) + 1


def _footprint(inv: np.ndarray, size: tuple[int, int], shape: tuple, margin: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) integer box in the frame holding the warped crop plus `margin`, clipped to the frame."""
    w, h = size
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], dtype=np.float64) @ inv.T
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - margin
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + margin + 1
    return max(x0, 0), max(y0, 0), min(max(x1, 1), shape[1]), min(max(y1, 1), shape[0])
