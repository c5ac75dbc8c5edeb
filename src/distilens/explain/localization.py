"""Does an explanation point at the object? Scores against ground-truth masks.

Both scores read a map as relevance per pixel: channels are summed, and a coarser map
(a CAM) is upsampled bilinearly to the mask's grid first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["mass_in_mask", "pointing_game"]


def _pixel_relevance(maps: Tensor, masks: Tensor) -> Tensor:
    """(B, C, h, w) or (B, h, w) maps → (B, H, W) relevance on the masks' (B, H, W) grid."""
    if maps.dim() == 3:
        maps = maps.unsqueeze(1)
    if maps.dim() != 4 or masks.dim() != 3 or maps.shape[0] != masks.shape[0]:
        raise ValueError(f"need (B, C, h, w) maps and (B, H, W) masks, got {tuple(maps.shape)} and {tuple(masks.shape)}")
    rel = maps.sum(1, keepdim=True).double()
    if rel.shape[-2:] != masks.shape[-2:]:
        rel = F.interpolate(rel, size=masks.shape[-2:], mode="bilinear", align_corners=False)
    return rel[:, 0]


def mass_in_mask(maps: Tensor, masks: Tensor) -> Tensor:
    """Relevance mass accuracy (Arras et al. 2022, "CLEVR-XAI"): Σ_mask R⁺ / Σ R⁺.

    Only positive relevance counts (negative evidence is not "looking at" the object).

    Args:
        maps: (B, C, h, w) or (B, h, w) attributions.
        masks: (B, H, W) bool ground truth.

    Returns:
        (B,) fraction in [0, 1]; NaN for a map without positive relevance. A map spread
        uniformly scores the mask's area fraction, the chance level.
    """
    rel = _pixel_relevance(maps, masks).clamp_min(0)  # (B, H, W)
    total = rel.flatten(1).sum(1)
    inside = (rel * masks.to(rel.device).double()).flatten(1).sum(1)
    frac = torch.where(total > 0, inside / total.clamp_min(1e-300), torch.full_like(total, math.nan))
    return frac.float().to(maps.device)


def pointing_game(maps: Tensor, masks: Tensor, tolerance: int = 0) -> Tensor:
    """Pointing game (Zhang et al. 2016): is the map's maximum inside the mask?

    Args:
        maps: (B, C, h, w) or (B, h, w) attributions.
        masks: (B, H, W) bool ground truth.
        tolerance: Pixels by which the mask is grown (square dilation) before the test;
            the paper uses 15 px on full-size images, 0 is exact.

    Returns:
        (B,) float, 1.0 for a hit and 0.0 for a miss; ties of the maximum are a hit when
        any tied pixel lies in the mask. NaN for an all-zero mask.
    """
    rel = _pixel_relevance(maps, masks)  # (B, H, W)
    m = masks.to(rel.device).bool()
    if tolerance > 0:
        k = 2 * tolerance + 1
        m = F.max_pool2d(m[:, None].float(), k, stride=1, padding=tolerance)[:, 0] > 0
    peak = rel == rel.flatten(1).max(1).values.view(-1, 1, 1)  # (B, H, W)
    hit = (peak & m).flatten(1).any(1).double()
    empty = ~masks.to(rel.device).bool().flatten(1).any(1)
    return torch.where(empty, torch.full_like(hit, math.nan), hit).float().to(maps.device)
