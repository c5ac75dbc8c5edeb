"""Seeded image augmentation as pure tensor functions, with parameters that can be stored.

Each op is a pure function of a batch and per-sample parameters (``crop``, ``hflip``,
``erase``), and a small class that holds its options, draws those parameters from a
``torch.Generator`` (``sample``) and applies them (``apply``). Drawing and applying are
separate so that the parameters of a view can be kept and the very same view made again
later, bit for bit, on any device: the ops only copy pixels or write a constant, with no
interpolation. That is what stored augmented views with their teacher soft labels need
(FKD, Shen & Xing 2022).

A pipeline is configured as a list of ``{name: OP, option: value, ...}`` mappings and built
with :func:`parse_augment`:

    [{name: crop, padding: 4}, {name: hflip}, {name: erase, p: 0.25}]

The ops work on (B, C, H, W) float tensors, normalised or not. Parameters are drawn on the
CPU (the same numbers whatever the batch's device) and moved to the batch's device.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, ClassVar, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..registry import Registry, did_you_mean

__all__ = [
    "crop", "hflip", "erase", "Crop", "HFlip", "Erase", "Augment", "AugmentOp", "AUGMENTATIONS", "parse_augment",
]

PadMode = Literal["zero", "reflect"]


def crop(x: Tensor, offsets: Tensor, padding: int, mode: PadMode = "zero") -> Tensor:
    """Pad every image by ``padding`` pixels on each side, then cut an H × W window from each.

    The random crop with padding of CIFAR training (He et al. 2016, §4.2: pad 4, crop 32×32).

    Args:
        x: (B, C, H, W) images.
        offsets: (B, 2) integer (top, left) corners of each window in the padded image, each
            in [0, 2·padding]; (padding, padding) gives the image back.
        padding: Pixels added on each side.
        mode: ``"zero"`` fills with 0 (the training mean, on normalised inputs),
            ``"reflect"`` mirrors the image at its border (needs padding < H and < W).

    Returns:
        (B, C, H, W): the windows.

    Example:
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> crop(x, torch.tensor([[1, 1]]), padding=1).equal(x)
        True
    """
    b, _, h, w = x.shape
    if offsets.shape != (b, 2):
        raise ValueError(f"crop: offsets must have shape ({b}, 2), not {tuple(offsets.shape)}")
    if padding == 0:
        return x.clone()
    padded = F.pad(x, (padding,) * 4, mode="reflect" if mode == "reflect" else "constant")
    offsets = offsets.to(device=x.device, dtype=torch.long)
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indices around a slice put their dims first: (B, H, W, C) -> (B, C, H, W).
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def hflip(x: Tensor, flags: Tensor) -> Tensor:
    """Mirror the images whose flag is set left to right.

    Args:
        x: (B, C, H, W) images.
        flags: (B,) bool, True where the image is flipped.

    Example:
        >>> x = torch.randn(2, 1, 3, 3)
        >>> f = torch.tensor([True, False])
        >>> hflip(hflip(x, f), f).equal(x)
        True
    """
    if flags.shape != (x.shape[0],):
        raise ValueError(f"hflip: flags must have shape ({x.shape[0]},), not {tuple(flags.shape)}")
    return torch.where(flags.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def erase(x: Tensor, boxes: Tensor, value: float = 0.0) -> Tensor:
    """Set one rectangle per image, across all channels, to ``value`` (random erasing, Zhong et al. 2020).

    Args:
        x: (B, C, H, W) images.
        boxes: (B, 4) integer (top, left, height, width); height or width 0 leaves the image as is.
        value: The fill (0: the training mean, on normalised inputs).

    Example:
        >>> erase(torch.ones(1, 1, 4, 4), torch.tensor([[1, 1, 2, 2]])).sum().item()
        12.0
    """
    b, _, h, w = x.shape
    if boxes.shape != (b, 4):
        raise ValueError(f"erase: boxes must have shape ({b}, 4), not {tuple(boxes.shape)}")
    top, left, bh, bw = boxes.to(device=x.device, dtype=torch.long).unbind(1)
    rows = torch.arange(h, device=x.device)[None, :]  # (1, H)
    cols = torch.arange(w, device=x.device)[None, :]  # (1, W)
    inside_r = (rows >= top[:, None]) & (rows < (top + bh)[:, None])  # (B, H)
    inside_c = (cols >= left[:, None]) & (cols < (left + bw)[:, None])  # (B, W)
    mask = (inside_r[:, :, None] & inside_c[:, None, :]).unsqueeze(1)  # (B, 1, H, W)
    return torch.where(mask, torch.tensor(value, dtype=x.dtype, device=x.device), x)


class AugmentOp:
    """One op: options (dataclass fields), ``sample`` (draw per-sample parameters), ``apply``."""

    name: ClassVar[str]

    def check(self, size: tuple[int, int]) -> None:
        """Raise :class:`ConfigError` when the options cannot work on H × W = ``size`` images."""

    def sample(self, n: int, size: tuple[int, int], generator: torch.Generator) -> Tensor:
        """(n, …) integer or bool parameters for ``n`` images of H × W = ``size``, drawn on the CPU."""
        raise NotImplementedError

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        """The op on (B, C, H, W) ``x`` with the (B, …) ``params`` from :meth:`sample`."""
        raise NotImplementedError


AUGMENTATIONS: Registry[type[AugmentOp]] = Registry("augmentation")


@AUGMENTATIONS.register("crop")
@dataclass(frozen=True)
class Crop(AugmentOp):
    """Random crop with padding: pad ``padding`` pixels per side (zero or reflect), cut H × W back."""

    padding: int = 4
    mode: PadMode = "zero"
    name: ClassVar[str] = "crop"

    def check(self, size: tuple[int, int]) -> None:
        if self.mode == "reflect" and self.padding >= min(size):
            raise ConfigError(
                f"augmentation 'crop': reflect padding {self.padding} needs images larger than "
                f"{self.padding} pixels a side; these are {size[0]}×{size[1]} (use a smaller padding or mode zero)"
            )

    def sample(self, n: int, size: tuple[int, int], generator: torch.Generator) -> Tensor:
        return torch.randint(0, 2 * self.padding + 1, (n, 2), generator=generator)  # (n, 2) top, left

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        return crop(x, params, self.padding, self.mode)


@AUGMENTATIONS.register("hflip")
@dataclass(frozen=True)
class HFlip(AugmentOp):
    """Horizontal flip of each image with probability ``p``."""

    p: float = 0.5
    name: ClassVar[str] = "hflip"

    def sample(self, n: int, size: tuple[int, int], generator: torch.Generator) -> Tensor:
        return torch.rand(n, generator=generator) < self.p  # (n,) bool

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        return hflip(x, params)


@AUGMENTATIONS.register("erase")
@dataclass(frozen=True)
class Erase(AugmentOp):
    """Random erasing (Zhong et al. 2020): with probability ``p``, one rectangle set to ``value``.

    Its area is a ``scale`` fraction of the image and its height/width ratio lies in
    ``ratio`` (the paper's defaults: p 0.5, area 0.02–0.4, ratio 0.3–3.3). The ratio is
    drawn log-uniformly, so tall and wide boxes are equally likely; the paper draws it
    uniformly, which makes three boxes in four taller than wide. Up to ``attempts``
    candidates are drawn per image, as the paper retries until the box fits; the first
    whose whole-pixel area lies within ``scale`` is used, and an image with none is left
    as is.
    """

    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.4)
    ratio: tuple[float, float] = (0.3, 3.3)
    value: float = 0.0
    attempts: int = 10
    name: ClassVar[str] = "erase"

    def sample(self, n: int, size: tuple[int, int], generator: torch.Generator) -> Tensor:
        h, w = size
        a = self.attempts
        area = (self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(n, a, generator=generator, dtype=torch.float64)) * h * w
        log_r = math.log(self.ratio[0]) + (math.log(self.ratio[1]) - math.log(self.ratio[0])) * torch.rand(
            n, a, generator=generator, dtype=torch.float64
        )
        bh = torch.sqrt(area * torch.exp(log_r)).round().long()  # (n, a)
        bw = torch.sqrt(area / torch.exp(log_r)).round().long()
        pixels = bh * bw
        fits = (bh >= 1) & (bh <= h) & (bw >= 1) & (bw <= w)
        fits &= (pixels >= math.ceil(self.scale[0] * h * w - 1e-9)) & (pixels <= math.floor(self.scale[1] * h * w + 1e-9))
        first = torch.argmax(fits.to(torch.int8), dim=1)  # the first candidate that fits (0 if none)
        chosen = fits.any(dim=1) & (torch.rand(n, generator=generator) < self.p)
        bh = torch.where(chosen, bh.gather(1, first[:, None]).squeeze(1), 0)
        bw = torch.where(chosen, bw.gather(1, first[:, None]).squeeze(1), 0)
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        top = (u[:, 0] * (h - bh + 1)).floor().long().clamp_max(h - bh)
        left = (u[:, 1] * (w - bw + 1)).floor().long().clamp_max(w - bw)
        top, left = torch.where(chosen, top, 0), torch.where(chosen, left, 0)  # no box: (0, 0, 0, 0)
        return torch.stack([top, left, bh, bw], dim=1)  # (n, 4)

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        return erase(x, params, self.value)


# Option checks: name → (test, what it must be).
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "padding": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 64, "an integer from 0 to 64"),
    "mode": (lambda v: v in ("zero", "reflect"), "'zero' or 'reflect'"),
    "p": (lambda v: _is_number(v) and 0.0 <= v <= 1.0, "a probability from 0 to 1"),
    "scale": (lambda v: _is_range(v) and 0.0 < v[0] <= v[1] <= 1.0, "[low, high] with 0 < low <= high <= 1"),
    "ratio": (lambda v: _is_range(v) and 0.0 < v[0] <= v[1], "[low, high] with 0 < low <= high"),
    "value": (lambda v: _is_number(v) and math.isfinite(v), "a finite number"),
    "attempts": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 100, "an integer from 1 to 100"),
}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_range(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_number(e) for e in v)


def _normalise(key: str, v: Any) -> Any:
    """One spelling per value, so equal configs give equal :meth:`Augment.to_config` (1 and 1.0 alike)."""
    if isinstance(v, (list, tuple)):
        return tuple(float(e) for e in v)
    return float(v) if key in ("p", "value") else v


@dataclass(frozen=True)
class Augment:
    """A sequence of ops applied in order; its parameters are one tensor per op.

    Example:
        >>> aug = parse_augment([{"name": "crop", "padding": 4}, {"name": "hflip"}])
        >>> g = torch.Generator().manual_seed(0)
        >>> params = aug.sample(8, (28, 28), g)          # keep these to make the view again
        >>> view = aug.apply(images, params)             # images: (8, C, 28, 28)
    """

    ops: tuple[AugmentOp, ...] = ()

    def sample(self, n: int, size: tuple[int, int], generator: torch.Generator) -> tuple[Tensor, ...]:
        """Draw every op's parameters for ``n`` images of H × W = ``size``, op by op."""
        for op in self.ops:
            op.check(size)
        return tuple(op.sample(n, size, generator) for op in self.ops)

    def apply(self, x: Tensor, params: Sequence[Tensor]) -> Tensor:
        """Apply the ops to (B, C, H, W) ``x`` with parameters from :meth:`sample` (or a row subset of them)."""
        if len(params) != len(self.ops):
            raise ValueError(f"Augment.apply: {len(self.ops)} ops but {len(params)} parameter tensors")
        for op, p in zip(self.ops, params):
            x = op.apply(x, p)
        return x

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Draw parameters and apply them: one augmented view of (B, C, H, W) ``x``."""
        return self.apply(x, self.sample(x.shape[0], (x.shape[-2], x.shape[-1]), generator))

    def to_config(self) -> list[dict[str, Any]]:
        """The list of ``{name, options}`` this was parsed from, every option spelled out (for cache keys)."""
        out = []
        for op in self.ops:
            options = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(op).items()}  # type: ignore[call-overload]
            out.append({"name": op.name, **options})
        return out


def parse_augment(spec: Sequence[Mapping[str, Any]] | None, *, where: str = "data.augment") -> Augment:
    """Build an :class:`Augment` from a config list of ``{name: OP, option: value, ...}``.

    Args:
        spec: The ops in order; ``None`` or ``[]``: no augmentation. The ops and their
            options: ``crop`` (padding, mode), ``hflip`` (p), ``erase`` (p, scale, ratio,
            value, attempts).
        where: The config key, for messages.

    Raises:
        ConfigError: One line naming the entry and what would work: not a mapping, no or an
            unknown name, an unknown option, or a value of the wrong kind or range.

    Example:
        >>> parse_augment([{"name": "crop", "padding": 4, "mode": "reflect"}, {"name": "hflip"}]).ops[0]
        Crop(padding=4, mode='reflect')
    """
    if spec is None:
        return Augment()
    if not isinstance(spec, (list, tuple)):
        raise ConfigError(f"{where} must be a list of {{name: OP, ...}} entries, not {type(spec).__name__}")
    ops = []
    for i, entry in enumerate(spec):
        at = f"{where}[{i}]"
        if not isinstance(entry, Mapping) or "name" not in entry:
            raise ConfigError(f"{at} must be a mapping with a 'name' ({', '.join(AUGMENTATIONS.names())}), not {entry!r}")
        name = entry["name"]
        if not isinstance(name, str) or name not in AUGMENTATIONS:
            raise ConfigError(
                f"{at}: unknown augmentation {name!r}{did_you_mean(str(name), AUGMENTATIONS.names())}; "
                f"known augmentations: {', '.join(AUGMENTATIONS.names())}"
            )
        cls = AUGMENTATIONS.get(name)
        allowed = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        options = {k: v for k, v in entry.items() if k != "name"}
        for key, value in options.items():
            if key not in allowed:
                raise ConfigError(f"{at}: augmentation '{name}' has no option '{key}'{did_you_mean(str(key), allowed)}; "
                                  f"its options are: {', '.join(allowed)}")
            test, must = _RULES[key]
            if not test(value):
                raise ConfigError(f"{at}: {name}.{key} must be {must}, not {value!r}")
        ops.append(cls(**{k: _normalise(k, v) for k, v in options.items()}))
    return Augment(tuple(ops))
