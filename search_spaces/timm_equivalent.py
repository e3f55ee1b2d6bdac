"""The timm equivalent of a config: the ``timm.models.resnet.ResNet(...)`` call that builds the same network.

``timm_equivalent(config)`` returns a :class:`TimmEquivalent` (the kwargs, a ``call()`` a user can paste,
``build()``) when timm's ``ResNet`` class can express the config exactly — same tensors in the same order,
same outputs with the same weights — and otherwise a one-line reason naming the config fields that do not
fit (``"stem.type: ..."``; several reasons are joined by ``"; "``).

How a config maps onto timm's ``ResNet`` (timm 1.0, ``timm/models/resnet.py``):

* Stem. ``basic`` is ``stem_type=''``, whose 7×7/2 conv always has 64 channels (timm ignores
  ``stem_width`` there). ``deep`` is ``stem_type='deep'``, whose three 3×3 convs are ``stem_width``,
  ``stem_width``, ``2 × stem_width`` wide: ``stem_width = mid_width`` and ``width`` must be twice it.
  timm always max-pools after the stem (3×3/2) and has no 3×3/1 ``cifar`` stem.
* Stages. Exactly four (timm's ``forward`` runs ``layer1``…``layer4``), strided 1, 2, 2, 2. Every block
  expands by 4: ``channels`` (timm's ``planes``) is each stage width / 4.
* The 3×3 width. timm computes it per stage as ``floor(planes × (base_width / 64)) × cardinality`` from
  one ``cardinality`` and one ``base_width``, so a config fits when one cardinality and one base width
  reproduce every stage's ``group_width``. The smallest integer that does is used; when the group width
  is not an integer multiple of planes / 64 (stage widths 192·2^i, 320·2^i...) the shortest decimal in
  the admissible interval that timm's float arithmetic floors to the right widths (e.g. ``2.7``).
* The block, one for all stages (timm passes one ``block`` and one ``block_args`` to every stage):
  plain → ``Bottleneck``; SE (one ratio) → ``Bottleneck`` with ``attn_layer`` ``'se'`` or
  ``partial(SEModule, rd_ratio, rd_divisor)``; split attention (one radix) → ``ResNestBottleneck``
  (``radix``, ``avd``, ``avd_first``; its ``SplitAttn`` sizes the attention with the fixed rule
  ``make_divisible(width × radix / 4, 8, min 32)``, and has no SE); plain with ``avd`` →
  ``ResNestBottleneck`` with ``radix=0``; SK → ``SelectiveKernelBottleneck`` with ``sk_kwargs``
  (``rd_ratio = 1 / sk_reduction``, ``rd_divisor``, ``split_input``; SE allowed, no avd).
* ``avg_down`` maps to ``avg_down``; ``in_channels`` / ``classes`` to ``in_chans`` / ``num_classes``.

Attention widths are compared with timm's own float arithmetic (``channels * (1 / r)``, which can
round differently from our ``channels / r``), so a config is only called equivalent when every tensor
matches. The mapping is pure Python; timm is imported only by :meth:`TimmEquivalent.build`.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from nas.search_spaces.config import ArchConfig, StageConfig

__all__ = ["TimmEquivalent", "TimmName", "timm_equivalent"]

# Where each timm name that a call can use is defined (the import lines of ``call()``).
_TIMM_MODULES = {
    "ResNet": "timm.models.resnet",
    "Bottleneck": "timm.models.resnet",
    "ResNestBottleneck": "timm.models.resnest",
    "SelectiveKernelBottleneck": "timm.models.sknet",
    "SEModule": "timm.layers",
}
_CALL_WIDTH = 100  # wrap the printed call's arguments at this many characters


class _Reciprocal(float):
    """``1 / n``, printed that way (as timm writes its ratios); equal to the float Python computes."""

    def __new__(cls, n: int) -> _Reciprocal:
        return super().__new__(cls, 1 / n)

    def __repr__(self) -> str:
        return f"1 / {round(1 / self)}"


@dataclass(frozen=True)
class TimmName:
    """A timm class among the kwargs, optionally bound with ``functools.partial`` arguments.

    Printed as code (``Bottleneck``, ``partial(SEModule, rd_ratio=1 / 8, rd_divisor=8)``) and resolved
    to the real object by :meth:`resolve`, so the printed call and ``build()`` cannot disagree.
    """

    name: str
    partial_args: tuple[tuple[str, Any], ...] = ()

    def code(self) -> str:
        if not self.partial_args:
            return self.name
        return f"partial({self.name}, {', '.join(f'{k}={_code(v)}' for k, v in self.partial_args)})"

    def resolve(self) -> Any:
        cls = getattr(importlib.import_module(_TIMM_MODULES[self.name]), self.name)
        return functools.partial(cls, **dict(self.partial_args)) if self.partial_args else cls


@dataclass(frozen=True)
class TimmEquivalent:
    """timm's ``ResNet(**kwargs)`` that builds the same network as a config.

    ``block`` is the block class's name; ``kwargs`` are ``ResNet``'s keyword arguments, plain Python
    values except for timm classes, which are :class:`TimmName` (``kwargs["block"]`` among them).
    """

    block: str
    kwargs: dict[str, Any]

    def imports(self) -> list[str]:
        """The import lines ``call()`` needs."""
        refs = _names(self.kwargs)
        by_module: dict[str, list[str]] = {}
        for name in ["ResNet"] + [r.name for r in refs]:
            names = by_module.setdefault(_TIMM_MODULES[name], [])
            if name not in names:
                names.append(name)
        lines = ["from functools import partial"] if any(r.partial_args for r in refs) else []
        return lines + [f"from {module} import {', '.join(names)}" for module, names in sorted(by_module.items())]

    def call(self) -> str:
        """Python a user can paste: the imports, then ``model = ResNet(...)``."""
        args = [f"{k}={_code(v)}" for k, v in self.kwargs.items()]
        line = f"model = ResNet({', '.join(args)})"
        if len(line) > _CALL_WIDTH:
            rows = [""]
            for a in args:
                if rows[-1] and len(rows[-1]) + len(a) + 6 > _CALL_WIDTH:
                    rows.append("")
                rows[-1] += ("" if not rows[-1] else " ") + a + ","
            line = "model = ResNet(\n" + "\n".join("    " + r for r in rows) + "\n)"
        return "\n".join(self.imports()) + "\n\n" + line

    def build(self) -> Any:
        """The timm model (``timm.models.resnet.ResNet``); build under ``with torch.device(...)`` to
        place it, e.g. on the meta device to count it without memory."""
        from timm.models.resnet import ResNet

        return ResNet(**_resolve(self.kwargs))


def timm_equivalent(config: ArchConfig) -> TimmEquivalent | str:
    """timm's ``ResNet`` call for ``config``, or a one-line reason why timm's ``ResNet`` cannot build it."""
    why: list[str] = []
    stem_type, stem_width = _stem(config, why)
    stages = config.stages
    if len(stages) != 4:
        why.append(f"stages: timm's ResNet has exactly 4 stages, its forward runs layer1 to layer4 "
                   f"(this has {len(stages)})")
    strides = [s.stride for s in stages]
    if strides != [1] + [2] * (len(stages) - 1):
        why.append(f"stages.*.stride: timm's ResNet strides its stages 1, 2, 2, 2 (this has {_join(strides)})")
    cardinality = _one(stages, "cardinality", why)
    planes = [s.width // 4 for s in stages]
    base_width: int | float | None = None
    if any(s.width % 4 for s in stages):
        why.append(f"stages.*.width: timm's bottlenecks output 4 x planes channels, and "
                   f"{_join(s.width for s in stages if s.width % 4)} is not a multiple of 4")
    elif cardinality is not None:
        base_width = _base_width(planes, [s.group_width for s in stages])
        if base_width is None:
            why.append(f"stages.*.group_width: timm derives every stage's group width as "
                       f"floor(width / 4 x base_width / 64) from one base_width, and none gives "
                       f"{_join(s.group_width for s in stages)} for widths {_join(s.width for s in stages)}")
    block, block_args = _block(config, why)
    if why:
        return "; ".join(why)
    assert block is not None and base_width is not None
    kwargs: dict[str, Any] = dict(
        block=TimmName(block), layers=[s.depth for s in stages], channels=tuple(planes), cardinality=cardinality,
        base_width=base_width, stem_type=stem_type, stem_width=stem_width, avg_down=config.block.avg_down)
    if block_args:
        kwargs["block_args"] = block_args
    kwargs.update(in_chans=config.in_channels, num_classes=config.classes)
    return TimmEquivalent(block, kwargs)


# ---- the rules ---------------------------------------------------------------------------------------


def _stem(config: ArchConfig, why: list[str]) -> tuple[str, int]:
    stem = config.stem
    if stem.type == "cifar":
        why.append("stem.type: timm's ResNet has no 3x3/1 'cifar' stem (only the 7x7/2 conv and the deep 3x3 stack)")
    elif stem.type == "basic" and stem.width != 64:
        why.append(f"stem.width: timm's 7x7 stem always has 64 channels, stem_width applies to deep stems only "
                   f"(this has {stem.width})")
    elif stem.type == "deep" and stem.width != 2 * (stem.mid_width or 0):
        why.append(f"stem.width: timm's deep stem ends at 2 x stem_width = 2 x mid_width = {2 * (stem.mid_width or 0)} "
                   f"channels (this has {stem.width})")
    if not stem.pool and stem.type != "cifar":  # a cifar stem has no pool by default; its type is the reason
        why.append("stem.pool: timm's ResNet always max-pools (3x3/2) after the stem")
    if stem.type == "deep":
        return "deep", stem.mid_width or 0
    return "", 64


def _base_width(planes: list[int], group_widths: list[int]) -> int | float | None:
    """One base width with ``floor(p * (base_width / 64)) == g`` for every stage (timm's arithmetic):
    the smallest integer if one works, else the shortest decimal; ``None`` when none exists."""
    lo = max(Fraction(64 * g, p) for p, g in zip(planes, group_widths))
    hi = min(Fraction(64 * (g + 1), p) for p, g in zip(planes, group_widths))
    for digits in range(7):
        scale = 10**digits
        first = math.ceil(lo * scale)
        # The interval's lower end can floor one short in floating point; the next decimal may not.
        for k in (first, first + 1):
            if not lo <= Fraction(k, scale) < hi:
                continue
            value: int | float = k if digits == 0 else k / scale
            if all(_timm_group_width(p, value) == g for p, g in zip(planes, group_widths)):
                return value
    return None


def _timm_group_width(planes: int, base_width: float) -> int:
    # timm's Bottleneck / SelectiveKernelBottleneck; ResNestBottleneck's int() agrees for positive values.
    return int(math.floor(planes * (base_width / 64)))


def _block(config: ArchConfig, why: list[str]) -> tuple[str | None, dict[str, Any]]:
    """The one block class for all stages and its ``block_args``."""
    stages, b = config.stages, config.block
    mixed = False
    for f, what in (("radix", "radix (0 = plain 3x3)"), ("sk", "SK setting"), ("se_ratio", "SE ratio (or none)")):
        values = [getattr(s, f) for s in stages]
        if len(set(values)) > 1:
            why.append(f"stages.*.{f}: timm's ResNet gives every stage one block and one block_args, so one "
                       f"{what} for all stages (this has {_join(values)})")
            mixed = True
    if mixed:
        return None, {}
    radix, sk, se_ratio = stages[0].radix, stages[0].sk, stages[0].se_ratio
    if radix or (b.avd != "none" and not sk):
        if se_ratio:
            kind = f"split attention (radix {radix})" if radix else f"avd '{b.avd}'"
            why.append(f"stages.*.se_ratio: {kind} needs timm's ResNestBottleneck, which has no SE "
                       f"(this has se_ratio {se_ratio})")
        if radix:
            _check_split(config, why)
        return "ResNestBottleneck", dict(radix=radix, avd=b.avd != "none", avd_first=b.avd == "first")
    args: dict[str, Any] = {}
    if sk:
        if b.avd != "none":
            why.append(f"block.avd: timm's SelectiveKernelBottleneck has no avd pooling (this has '{b.avd}')")
        _check_attn(config, why, "block.sk_reduction", "SelectiveKernel", b.sk_reduction, b.sk_divisor,
                    lambda s: s.bottleneck_width, 0.9)
        args["sk_kwargs"] = dict(rd_ratio=_Reciprocal(b.sk_reduction), rd_divisor=b.sk_divisor,
                                 split_input=b.sk_split_input)
    if se_ratio:
        _check_attn(config, why, "stages.*.se_ratio", "SEModule", se_ratio, b.se_divisor, lambda s: s.width, 0.0)
        args["attn_layer"] = ("se" if (se_ratio, b.se_divisor) == (16, 8) else TimmName(
            "SEModule", (("rd_ratio", _Reciprocal(se_ratio)), ("rd_divisor", b.se_divisor))))
    return ("SelectiveKernelBottleneck" if sk else "Bottleneck"), args


def _check_attn(config: ArchConfig, why: list[str], field: str, layer: str, ratio: int, divisor: int,
                channels: Callable[[StageConfig], int], round_limit: float) -> None:
    """SE / SK attention widths: timm multiplies by ``1 / ratio`` where we divide by ``ratio``, which
    can land on the other side of a rounding boundary."""
    for i, s in enumerate(config.stages):
        c = channels(s)
        ours = _make_divisible(c / ratio, divisor, round_limit=round_limit)
        theirs = _make_divisible(c * (1 / ratio), divisor, round_limit=round_limit)
        if ours != theirs:
            why.append(f"{field}: timm's {layer} rounds {c} x (1 / {ratio}) to {theirs} attention channels "
                       f"in stage {i + 1} (ours rounds {c} / {ratio} to {ours})")
            return


def _check_split(config: ArchConfig, why: list[str]) -> None:
    """timm's ResNestBottleneck gives SplitAttn no attention options: width x radix / 4, multiple of 8,
    at least 32 (and its 1x1 convs are grouped by cardinality, which must divide that)."""
    b = config.block
    for i, s in enumerate(config.stages):
        mid = s.bottleneck_width
        ours = _make_divisible(mid * s.radix / b.split_reduction, b.split_divisor, min_value=b.split_min)
        ours = -(-ours // s.cardinality) * s.cardinality
        theirs = _make_divisible(mid * s.radix * 0.25, 8, min_value=32)
        if ours == theirs:
            continue
        if theirs % s.cardinality:
            why.append(f"stages.*.cardinality: timm's SplitAttn would have {theirs} attention channels in stage "
                       f"{i + 1}, not divisible by cardinality {s.cardinality} (timm cannot build it)")
        else:
            fields = [f for f, d in (("split_reduction", 4), ("split_divisor", 8), ("split_min", 32))
                      if getattr(b, f) != d] or ["split_reduction"]
            why.append(f"block.{'/'.join(fields)}: timm's SplitAttn has fixed attention widths "
                       f"(width x radix / 4, multiple of 8, at least 32): {theirs} in stage {i + 1} (this has {ours})")
        return


def _one(stages: list[StageConfig], f: str, why: list[str]) -> Any:
    values = [getattr(s, f) for s in stages]
    if len(set(values)) > 1:
        why.append(f"stages.*.{f}: timm's ResNet needs one {f} for all stages (this has {_join(values)})")
        return None
    return values[0]


def _make_divisible(v: float, divisor: int, min_value: int | None = None, round_limit: float = 0.9) -> int:
    # timm.layers.make_divisible (our blocks.make_divisible is the same rule), kept here so the
    # mapping imports neither torch nor timm.
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


# ---- printing and resolving --------------------------------------------------------------------------


def _join(values: Any) -> str:
    return ", ".join("none" if v is None else str(v) for v in values)


def _code(v: Any) -> str:
    if isinstance(v, TimmName):
        return v.code()
    if isinstance(v, dict):
        return "dict(" + ", ".join(f"{k}={_code(x)}" for k, x in v.items()) + ")"
    if isinstance(v, list):
        return "[" + ", ".join(map(_code, v)) + "]"
    if isinstance(v, tuple):
        return "(" + ", ".join(map(_code, v)) + (",)" if len(v) == 1 else ")")
    return repr(v)


def _names(v: Any) -> list[TimmName]:
    if isinstance(v, TimmName):
        return [v]
    if isinstance(v, dict):
        return [n for x in v.values() for n in _names(x)]
    if isinstance(v, (list, tuple)):
        return [n for x in v for n in _names(x)]
    return []


def _resolve(v: Any) -> Any:
    if isinstance(v, TimmName):
        return v.resolve()
    if isinstance(v, dict):
        return {k: _resolve(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return type(v)(_resolve(x) for x in v)
    return v
