"""The architecture config: one candidate network as a typed, validated, frozen value.

A config is everything needed to rebuild the exact network (and to count its cost
without building it): the stem, every stage's depth / width / cardinality / group
width / attention, the block options, the input resolution and the number of
classes. It round-trips through YAML and JSON unchanged, and its canonical hash
identifies an architecture (two configs with equal fields have equal hashes).

Vocabulary (ResNeXt paper, pycls/RegNet):

* ``width`` — a stage's output channels (the block's expanded output, e.g. 256 in
  ResNet-50's first stage).
* ``cardinality`` × ``group_width`` — the bottleneck width, i.e. the number of
  channels of the 3×3 convolution; ``cardinality`` is its number of groups.
* ``radix`` — 0: plain grouped 3×3 conv; r ≥ 1: ResNeSt split attention over r
  splits inside each cardinal group (r = 1 gates with a sigmoid, r > 1 with a
  softmax across splits).
* ``sk`` — selective-kernel 3×3 (two paths, 3×3 and dilated 3×3, fused by a
  softmax attention), as in SKNet.
* ``se_ratio`` — squeeze-excitation on the block output with reduction ratio r
  (channels / r, rounded to ``block.se_divisor``), or ``None``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nas.common.errors import UserError
from nas.common.files import read_user_text, yaml_error

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)


class StemConfig(BaseModel):
    """The network's stem.

    * ``basic``: 7×7/2 conv → BN → ReLU (torchvision ResNet).
    * ``deep``: three 3×3 convs (the first stride 2) of ``mid_width``, ``mid_width``,
      ``width`` channels (ResNet-D / ResNeSt "deep stem").
    * ``cifar``: one 3×3/1 conv → BN → ReLU (ResNeXt-29 on CIFAR).

    ``pool`` adds a 3×3/2 max-pool after the stem; unset, it is on for ``basic``
    and ``deep`` and off for ``cifar``.
    """

    model_config = _STRICT

    type: Literal["basic", "deep", "cifar"] = "basic"
    width: int = Field(64, ge=1, description="output channels of the stem")
    mid_width: int | None = Field(None, ge=1, description="channels of the first two convs of a deep stem")
    pool: bool | None = None

    @model_validator(mode="after")
    def _resolve(self) -> StemConfig:
        if self.type == "deep" and self.mid_width is None:
            object.__setattr__(self, "mid_width", self.width // 2 or 1)
        if self.type != "deep" and self.mid_width is not None:
            raise ValueError("mid_width applies only to a deep stem")
        if self.pool is None:
            object.__setattr__(self, "pool", self.type != "cifar")
        return self


class StageConfig(BaseModel):
    """One stage: ``depth`` bottleneck blocks; the first one may change stride and width."""

    model_config = _STRICT

    depth: int = Field(ge=1, description="number of blocks")
    width: int = Field(ge=1, description="output channels of every block")
    cardinality: int = Field(1, ge=1, description="groups of the 3x3 conv")
    group_width: int = Field(ge=1, description="channels per group of the 3x3 conv")
    stride: int = Field(2, ge=1, le=2, description="stride of the stage's first block")
    se_ratio: int | None = Field(None, ge=1, description="squeeze-excitation reduction ratio, or null")
    radix: int = Field(0, ge=0, description="0: plain grouped conv; >=1: split attention with this radix")
    sk: bool = Field(False, description="selective-kernel 3x3 conv")

    @property
    def bottleneck_width(self) -> int:
        return self.cardinality * self.group_width

    @model_validator(mode="after")
    def _check(self) -> StageConfig:
        if self.sk and self.radix:
            raise ValueError("sk and radix are alternatives for the 3x3 conv; set one of them")
        if self.radix > 1 and self.group_width % self.radix:
            # Split attention's 3x3 conv has cardinality*radix groups over the bottleneck width.
            raise ValueError(f"group_width {self.group_width} must be divisible by radix {self.radix}")
        return self


class BlockOptions(BaseModel):
    """Options shared by every block; defaults are those of timm's reference networks."""

    model_config = _STRICT

    avd: Literal["none", "first", "last"] = Field(
        "none", description="strided blocks: 3x3 avg-pool downsampling before or after the 3x3 conv")
    avg_down: bool = Field(False, description="strided shortcut: 2x2 avg-pool then 1x1 conv (ResNet-D)")
    se_divisor: int = Field(8, ge=1, description="SE reduced channels are rounded to a multiple of this")
    sk_reduction: int = Field(16, ge=1, description="SK attention: channels / sk_reduction")
    sk_divisor: int = Field(32, ge=1, description="SK attention channels are rounded to a multiple of this")
    sk_split_input: bool = Field(False, description="SK paths each see half the input channels")
    split_reduction: int = Field(4, ge=1, description="split attention: channels * radix / split_reduction")
    split_divisor: int = Field(8, ge=1, description="split attention channels: multiple of this")
    split_min: int = Field(32, ge=1, description="split attention channels: at least this")


class ArchConfig(BaseModel):
    """One candidate network. See the module docstring for the vocabulary."""

    model_config = _STRICT

    name: str | None = Field(None, description="free-form label; not part of the architecture's hash")
    provenance: dict[str, Any] | None = Field(
        None, description="where the config came from (nas export: study, trial, metrics); not part of the hash")
    resolution: int = Field(224, ge=1, description="input height and width")
    in_channels: int = Field(3, ge=1)
    classes: int = Field(1000, ge=1)
    stem: StemConfig = StemConfig()
    stages: list[StageConfig] = Field(min_length=1)
    block: BlockOptions = BlockOptions()

    @model_validator(mode="before")
    @classmethod
    def _default_strides(cls, data: Any) -> Any:
        # The first stage keeps the stem's resolution, later ones halve it, unless told otherwise.
        if isinstance(data, dict) and isinstance(data.get("stages"), (list, tuple)):
            stages = []
            for i, stage in enumerate(data["stages"]):
                if isinstance(stage, dict) and "stride" not in stage:
                    stage = {**stage, "stride": 1 if i == 0 else 2}
                stages.append(stage)
            data = {**data, "stages": stages}
        return data

    @model_validator(mode="after")
    def _check(self) -> ArchConfig:
        b = self.block
        for i, s in enumerate(self.stages):
            if s.sk and b.sk_split_input and s.bottleneck_width % 2:
                raise ValueError(f"stages.{i}: sk_split_input needs an even bottleneck width")
            if s.sk and b.sk_split_input and (s.bottleneck_width // 2) % min(s.bottleneck_width, s.cardinality):
                raise ValueError(f"stages.{i}.cardinality must divide half the bottleneck width (sk_split_input)")
        return self

    # ---- identity -------------------------------------------------------------------------
    def architecture_dict(self) -> dict[str, Any]:
        """The fields that define the network (everything but ``name`` and ``provenance``), JSON-ready."""
        return self.model_dump(mode="json", exclude={"name", "provenance"})

    def arch_hash(self) -> str:
        """A canonical hash: equal architectures, equal hashes, whatever their names."""
        blob = json.dumps(self.architecture_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def with_input(self, resolution: int | None = None, classes: int | None = None) -> ArchConfig:
        """The same network at another input resolution and/or number of classes."""
        data = self.model_dump()
        if resolution is not None:
            data["resolution"] = resolution
        if classes is not None:
            data["classes"] = classes
        return parse_config(data, source="config")

    def describe(self) -> str:
        """A one-line summary of the stages: ``d3-4-6-3 w256-512-1024-2048 1x64-128-256-512 r2 se16``
        (depths, widths, cardinality x group width, then radix, SE ratios and SK where used; a
        value shared by all stages is written once)."""
        s = self.stages

        def per(f: str) -> str:
            vals = [getattr(x, f) for x in s]
            return str(vals[0]) if len(set(vals)) == 1 else "-".join(map(str, vals))

        parts = [f"d{per('depth')}", f"w{per('width')}", f"{per('cardinality')}x{per('group_width')}"]
        if any(x.radix for x in s):
            parts.append(f"r{per('radix')}")
        if any(x.se_ratio for x in s):
            parts.append("se" + "-".join(str(x.se_ratio or 0) for x in s))
        if any(x.sk for x in s):
            parts.append("sk" + "".join("1" if x.sk else "0" for x in s))
        return " ".join(parts)

    # ---- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for key in ("name", "provenance"):
            if data[key] is None:
                del data[key]
        if "provenance" in data:  # metadata last: the architecture reads first in a file
            data["provenance"] = data.pop("provenance")
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_yaml(cls, text: str, source: str = "config") -> ArchConfig:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise yaml_error(exc, source) from None
        return parse_config(data, source=source)

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> ArchConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{source}: malformed JSON ({exc})") from None
        return parse_config(data, source=source)


def error_message(err: Any) -> str:
    """The user-facing text of one pydantic error (without its location)."""
    if err["type"] == "extra_forbidden":
        return "unknown key"
    return str(err["msg"]).removeprefix("Value error, ")


def _format_error(exc: ValidationError, source: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = error_message(err)
    more = len(exc.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {loc + ': ' if loc else ''}{msg}{tail}"


def parse_config(data: Any, source: str = "config") -> ArchConfig:
    """Validate plain data (from YAML/JSON) into an :class:`ArchConfig`, or raise one-line UserError."""
    if data is None:
        raise UserError(f"{source}: empty; a config needs at least its stages (see 'nas model show resnet50')")
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping of config keys, got {type(data).__name__}")
    try:
        return ArchConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(_format_error(exc, source)) from None
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None


def load_config(path: str | Path) -> ArchConfig:
    """Read a config from a ``.yaml``/``.yml``/``.json`` file."""
    path = Path(path)
    text = read_user_text(path)
    if path.suffix == ".json":
        return ArchConfig.from_json(text, source=str(path))
    return ArchConfig.from_yaml(text, source=str(path))
