"""Trained weights of the trials on the front, kept in Optuna's artifact store beside the study.

Workers never touch the study: a worker that trained a candidate hands its weights to a small
Ray actor owned by the driver (:class:`WeightsBox`, no CPU), and the driver alone decides what to
keep. When a trial completes on the current Pareto front, its weights are written to the
artifact store (``optuna.artifacts.FileSystemArtifactStore``) and the trial's system attribute
``artifacts:<id>`` — Optuna's own artifact record, so optuna-dashboard lists it — is written in
the same transaction as the trial's result. Weights of trials that are not on the front are
dropped; a trial that leaves the front later has its file removed (its record then says so when
exported).

The store sits beside an SQLite (or journal) file, ``nas.db`` → ``nas.db-artifacts/``; for a
database server it is ``./nas-artifacts`` unless ``--artifacts DIR`` says otherwise. Trials
record the host and folder their weights went to.
"""

from __future__ import annotations

import io
import json
import mimetypes
import socket
import uuid
from pathlib import Path
from typing import Any

from nas.study.storage import StorageURL

ARTIFACTS_ATTR_PREFIX = "artifacts:"  # Optuna's system-attribute prefix for a trial's artifacts


def artifacts_dir(storage: StorageURL, explicit: str | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if storage.path is not None:
        return storage.path.parent / f"{storage.path.name}-artifacts"
    return Path("nas-artifacts")


def artifact_meta(artifact_id: str, filename: str) -> str:
    """The JSON Optuna's ``upload_artifact`` records for an artifact (``optuna.artifacts``)."""
    mimetype, encoding = mimetypes.guess_type(filename)
    return json.dumps({"artifact_id": artifact_id, "filename": filename,
                       "mimetype": mimetype or "application/octet-stream", "encoding": encoding})


def box_actor() -> Any:
    import ray

    @ray.remote(num_cpus=0)
    class WeightsBox:
        """Holds the weights workers hand over until the driver takes or drops them."""

        def __init__(self) -> None:
            self.items: dict[int, bytes] = {}

        def put(self, number: int, data: bytes) -> None:
            self.items[number] = data

        def take(self, number: int) -> bytes | None:
            return self.items.pop(number, None)

    return WeightsBox


class WeightsKeeper:
    """The driver's side: takes a finished trial's weights from the box, keeps those on the front."""

    def __init__(self, folder: Path, box_name: str) -> None:
        import ray
        from optuna.artifacts import FileSystemArtifactStore

        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.store = FileSystemArtifactStore(str(folder))
        self.box_name = box_name
        self.box = box_actor().options(name=box_name).remote()
        self._ray = ray

    def take(self, number: int) -> bytes | None:
        try:
            return self._ray.get(self.box.take.remote(number), timeout=60)
        except Exception:  # the box died with its node: the weights are lost, the result is not
            return None

    def keep(self, number: int, data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
        """Write the weights; returns (system attrs, user attrs) to record with the trial's result."""
        artifact_id = str(uuid.uuid4())
        filename = f"trial-{number}-weights.pt"
        self.store.write(artifact_id, io.BytesIO(data))
        return ({ARTIFACTS_ATTR_PREFIX + artifact_id: artifact_meta(artifact_id, filename)},
                {"weights": {"artifact_id": artifact_id, "host": socket.gethostname(),
                             "folder": str(self.folder.resolve()), "bytes": len(data)}})

    def forget(self, artifact_id: str) -> None:
        """Remove a file kept for a trial that is no longer on the front."""
        try:
            self.store.remove(artifact_id)
        except Exception:  # already gone
            pass
