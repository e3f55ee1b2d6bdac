"""How counts read: FLOPs (multiply-adds) with their unit, counted words, image counts. No heavy imports: the CLI
uses it at start."""


def format_flops(n: float) -> str:
    """``4089184256`` → ``4.09 GFLOPs`` (multiply-adds, three significant digits)."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}FLOPs"
    return f"{n:.0f} FLOPs"


def format_params(n: float | None, missing: str = "-") -> str:
    """``25557032`` → ``25.56M``, ``12340`` → ``12.3k``; ``missing`` when unknown."""
    if n is None:
        return missing
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def plural(count: int, word: str) -> str:
    """``1 epoch``, ``3 epochs``, ``1,000 trained candidates``."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def format_count(n: int | None) -> str:
    """An image count as settings hold it: ``20,000``, or ``all`` where none is set (the whole split)."""
    return f"{n:,}" if n else "all"
