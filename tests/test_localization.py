import math

import pytest
import torch

from distilens.explain.localization import mass_in_mask, pointing_game


def _mask() -> torch.Tensor:
    m = torch.zeros(1, 4, 4, dtype=torch.bool)
    m[0, :2, :2] = True  # top-left quarter
    return m


def test_mass_in_mask_by_hand() -> None:
    maps = torch.zeros(1, 1, 4, 4)
    maps[0, 0, 0, 0] = 3.0  # inside
    maps[0, 0, 3, 3] = 1.0  # outside
    maps[0, 0, 1, 1] = -5.0  # negative relevance does not count
    assert mass_in_mask(maps, _mask()).item() == pytest.approx(3.0 / 4.0)


def test_mass_in_mask_chance_level_and_undefined() -> None:
    assert mass_in_mask(torch.ones(1, 1, 4, 4), _mask()).item() == pytest.approx(4 / 16)
    assert math.isnan(mass_in_mask(-torch.ones(1, 1, 4, 4), _mask()).item())


def test_channels_are_summed_and_coarse_maps_upsampled() -> None:
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, 0, 1] = 1.0
    maps[0, 1, 0, 1] = 1.0
    maps[0, 1, 2, 2] = 2.0
    assert mass_in_mask(maps, _mask()).item() == pytest.approx(0.5)
    cam = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # (1, 1, 2, 2): all mass top-left
    assert mass_in_mask(cam, _mask()).item() > 0.5
    assert pointing_game(cam, _mask()).item() == 1.0


def test_pointing_game_by_hand_with_tolerance() -> None:
    maps = torch.zeros(2, 1, 4, 4)
    maps[0, 0, 1, 0] = 1.0  # peak inside the mask
    maps[1, 0, 2, 2] = 1.0  # peak one pixel off the mask's corner (1, 1)
    masks = _mask().expand(2, 4, 4)
    assert pointing_game(maps, masks).tolist() == [1.0, 0.0]
    assert pointing_game(maps, masks, tolerance=1).tolist() == [1.0, 1.0]
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    assert math.isnan(pointing_game(maps[:1], empty).item())
