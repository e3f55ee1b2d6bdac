"""Take an architecture away from a study: its config with provenance, its weights, an ONNX graph.

The exported file is an ordinary config (``nas model summary``, ``nas.build_model``, ``nas train``
read it) at the space's resolution and classes — the network the budget speaks of — with a
``provenance`` block that is not part of the architecture: the study, the trial, the space and
its fingerprint, the budget, the dataset and fidelity, the metrics, and the complexity at both the
space's and the training resolution. The weights are those the search trained (the proxy's head:
its dataset's classes), kept for the trials that were on the front when they finished.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas import __version__
from nas.common.errors import UserError
from nas.common.files import atomic_write
from nas.search_spaces.config import ArchConfig, parse_config
from nas.study.records import DUPLICATE, OBJECTIVES, StudySettings, TrialRecord, front, within_noise

BY_CHOICES = ("accuracy", "knee", "flops", "params", "latency")


def pick_trial(records: Sequence[TrialRecord], settings: StudySettings, trial: int | None,
               by: str | None) -> TrialRecord:
    """The trial to export: ``trial`` by number, or the best of the front ``by`` a criterion."""
    by_number = {r.number: r for r in records}
    if trial is not None:
        r = by_number.get(trial)
        if r is None:
            raise UserError(f"study has no trial {trial} (trials 0 to {max(by_number, default=-1)})")
        if r.outcome == DUPLICATE and r.get("duplicate_of") in by_number:
            r = by_number[r.get("duplicate_of")]
        if r.state != "COMPLETE":
            why = r.get("reason") or r.outcome
            raise UserError(f"trial {trial} did not complete ({r.outcome}: {why}); 'nas pareto' lists trials "
                            f"to export")
        return r
    members = front(records, settings.objectives)
    if not members:
        raise UserError("the study has no completely trained candidate within its budget yet")
    by = by or "accuracy"
    if by == "knee":
        return knee(members, settings.objectives)
    if by not in settings.objectives:
        raise UserError(f"--by {by}: not an objective of this study ({', '.join(settings.objectives)}); "
                        f"use one of them or knee")
    maximise = OBJECTIVES[by][0]
    return (max if maximise else min)(members, key=lambda r: r.objective(by))  # type: ignore[arg-type, return-value]


def within_noise_of(record: TrialRecord, records: Sequence[TrialRecord], objectives: Sequence[str]) -> list[str]:
    """The other front members whose accuracy is within noise of ``record``'s, as
    ``"trial 3 (0.536 ±0.016)"``, most accurate first."""
    members = front(records, objectives)
    close = [m for m in members if m.number != record.number and within_noise(record, m)]
    return [f"trial {m.number} ({m.accuracy:.3f} ±{m.accuracy_se:.3f})" for m in close]


def knee(members: Sequence[TrialRecord], objectives: Sequence[str]) -> TrialRecord:
    """The front's knee. Objectives are scaled to [0, 1] over the front (0 best). With two, the knee
    is the point farthest from the line joining the front's two ends, on the ideal side of it (where
    trading one objective for the other stops paying). Where no point bulges that way (a front of
    one or two, or a concave one), and with more objectives, it is the point nearest the ideal
    point: the balanced one, not an end. Ties go to the better first objective."""
    scaled = []
    for r in members:
        row = []
        for o in objectives:
            values = [m.objective(o) for m in members]
            lo, hi = min(values), max(values)  # type: ignore[type-var]
            v = r.objective(o)
            x = 0.0 if hi == lo else (v - lo) / (hi - lo)  # type: ignore[operator]
            row.append(1.0 - x if OBJECTIVES[o][0] else x)
        scaled.append(row)
    if len(objectives) == 2:
        a = min(scaled, key=lambda p: p[0])
        b = min(scaled, key=lambda p: p[1])
        dx, dy = b[0] - a[0], b[1] - a[1]
        norm = math.hypot(dx, dy) or 1.0
        # A point strictly on the ideal side of the chord, by its distance from it.
        bulge = [(dy * (p[0] - a[0]) - dx * (p[1] - a[1])) / norm for p in scaled]
        if max(bulge) > 1e-12:
            return members[max(range(len(members)), key=lambda i: bulge[i])]
    return members[min(range(len(members)), key=lambda i: (math.fsum(x * x for x in scaled[i]), scaled[i][0]))]


def provenance(study_name: str, storage_text: str, r: TrialRecord, s: StudySettings,
               source: TrialRecord | None = None) -> dict[str, Any]:
    train = {"resolution": s.train_resolution, "classes": s.classes, "params": r.get("train_n_params"),
             "flops": r.get("train_flops"), "activations": r.get("train_activations")}
    out: dict[str, Any] = {
        "exported_by": f"nas {__version__}", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "study": study_name, "storage": storage_text, "trial": r.number,
        "space": s.space, "space_fingerprint": s.space_fingerprint, "budget": s.budget_text(),
        "dataset": s.dataset, "fidelity": s.fidelity, "objectives": dict(zip(s.objectives, r.values or ())),
        "metrics": {**{k: r.get(k) for k in ("accuracy", "best_accuracy", "val_images", "epochs", "latency_ms",
                                             "wall_time_s") if r.get(k) is not None},
                    **({"accuracy_se": round(r.accuracy_se, 5)} if r.accuracy_se is not None else {})},
        "complexity": {"space": {"resolution": s.space_resolution, "params": r.get("n_params"),
                                 "flops": r.get("flops"), "activations": r.get("activations")},
                       "train": train},
        "params": r.params,
    }
    latency = latency_provenance(r, s)
    if latency is not None:
        out["latency"] = latency
    if source is not None and source.number != r.number:
        out["requested_trial"] = source.number
    return out


def latency_provenance(r: TrialRecord, s: StudySettings) -> dict[str, Any] | None:
    """How the trial's latency was measured: the deployed network's median at batch 1 and its spread, the
    runtime and its version, the device, threads, dtype, resolution, every batch size timed, the reference
    network's median, and the study's plan (``plan``: runtime, threads, batch sizes, budget)."""
    lat = r.get("latency")
    if not lat:
        return None
    first = next((p for p in lat.get("points", []) if p.get("batch_size") == 1), {})
    keys = ("runtime", "runtime_version", "device", "device_name", "threads", "dtype", "resolution", "classes")
    return {"median_ms": first.get("median_ms"), "spread": first.get("spread"),
            "reference_ms": first.get("reference_ms"), **{k: lat.get(k) for k in keys},
            "points": lat.get("points"), "reference": lat.get("reference"), "plan": s.latency}


def exported_config(r: TrialRecord, prov: dict[str, Any]) -> ArchConfig:
    config = parse_config(r.get("config"), source=f"trial {r.number}")
    return parse_config({**config.to_dict(), "provenance": prov}, source=f"trial {r.number}")



def weights_bytes(r: TrialRecord, folder: Path) -> bytes:
    """The weights the search kept for a trial, or a one-line reason they are not there."""
    kept = r.get("weights")
    if not kept:
        raise UserError(f"trial {r.number}'s weights were not kept: the search keeps those of trials on the front "
                        f"when they finish; retrain it with 'nas train' on the exported file")
    path = folder / kept["artifact_id"]
    if not path.exists():
        where = Path(kept.get("folder", folder))
        hint = f" (kept in {where} on {kept.get('host')}; pass --artifacts)" if where.resolve() != folder.resolve() \
            else " (removed when another trial pushed it off the front)"
        raise UserError(f"trial {r.number}'s weights are not in {folder}{hint}")
    return path.read_bytes()


def write_export(config: ArchConfig, out: Path, weights: bytes | None, weights_out: Path | None,
                 onnx_out: Path | None, classes: int) -> None:
    """The config file, the weights and the ONNX graph, all or nothing: each is made in a staging
    folder beside the config first (the ONNX export is what can fail), then each is moved into
    place atomically. A failure leaves none of them written, and says why in one line."""
    import tempfile

    if weights is not None and weights_out is not None:
        config = parse_config({**config.to_dict(), "provenance": {
            **(config.provenance or {}), "weights": {"file": weights_out.name, "classes": classes,
                                                     "load": f"nas.build_model('{out.name}', classes={classes}, "
                                                             f"weights='{weights_out.name}')"}}})
    try:
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
            staged: list[tuple[Path, Path]] = []
            weights_path = None
            if weights is not None and weights_out is not None:
                weights_path = Path(tmp) / "weights.pt"
                weights_path.write_bytes(weights)
                staged.append((weights_path, weights_out))
            config_path = Path(tmp) / "config.yaml"
            config_path.write_text(config.to_yaml())
            staged.append((config_path, out))
            if onnx_out is not None:
                staged += stage_onnx(config, Path(tmp) / "onnx", onnx_out, weights_path, classes)
            for src, dst in staged:
                _place(src, dst)
    except OSError as exc:
        raise UserError(f"cannot write {exc.filename or out}: {exc.strerror or exc}") from None


def _place(src: Path, dst: Path) -> None:
    """Move a staged file to ``dst`` atomically (a copy through a temp file on another file system)."""
    try:
        os.replace(src, dst)
    except OSError as exc:
        import errno
        import shutil

        if exc.errno != errno.EXDEV:
            raise
        with src.open("rb") as f:
            atomic_write(dst, lambda g: shutil.copyfileobj(f, g))


def stage_onnx(config: ArchConfig, folder: Path, path: Path, weights: Path | None,
               classes: int) -> list[tuple[Path, Path]]:
    """Export the ONNX graph into ``folder``; returns (staged file, destination) pairs: the graph,
    and its weights file beside it when they are too large for one protobuf."""
    from nas.search_spaces.builder import build_model
    from nas.search_spaces.onnx_export import export_onnx

    model = build_model(config, classes=classes if weights else None, weights=weights)
    folder.mkdir()
    # The same export the deployment latency of a search measures (one code path): a dynamic batch
    # dimension, and the weights beside the graph when they are too large for one protobuf (2 GB).
    export_onnx(model, folder / path.name, config.resolution, config.in_channels)
    return [(produced, path.parent / produced.name) for produced in folder.iterdir()]
