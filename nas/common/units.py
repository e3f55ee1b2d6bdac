"""How counts read: FLOPs (multiply-adds) with their unit. No heavy imports: the CLI uses it at start."""


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
