"""The stage contract's cache: content-addressed manifests, verified before use.

Every stage computes a key from the CONTENT of its inputs (hashes of upstream
outputs or files), its own config section and an explicit stage version:

    key = sha256(stage, stage_version, config_hash, sorted(input name -> hash))

and stores a `Manifest` (output paths relative to the data root + their sha256,
plus a small JSON payload) under `<root>/cache/<stage>/<key>.json`. A cache hit
is trusted only when every output still exists and still has its hash; otherwise
the stage recomputes. Prefect's own INPUTS cache policy is not used because it
hashes a Path by its string and would serve stale results when a file changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage.atomic import write_json
from storage.hashing import FileHashMemo, hash_json
from storage.layout import DataLayout

#: Keys of `Manifest.data` the contract fills: the item's name (per-item stages), and the
#: inputs and config hash the manifest was computed from (what `dsan status` compares).
ITEM, INPUTS, CONFIG = "_item", "_inputs", "_config"


def stage_key(stage: str, version: str, config_hash: str, inputs: Mapping[str, str]) -> str:
    return hash_json(
        {"stage": stage, "version": version, "config": config_hash, "inputs": dict(inputs)}
    )[:32]


@dataclass(frozen=True)
class Manifest:
    """What a stage (or one item of a stage) produced: small, JSON-able, no arrays."""

    stage: str
    key: str
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {path, sha256}
    data: dict[str, Any] = field(default_factory=dict)

    def output_hashes(self) -> dict[str, str]:
        return {name: ref["sha256"] for name, ref in self.outputs.items()}

    def output_path(self, layout: DataLayout, name: str) -> Path:
        return layout.resolve(self.outputs[name]["path"])

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "key": self.key, "outputs": self.outputs, "data": self.data}

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> Manifest:
        return cls(
            stage=payload["stage"],
            key=payload["key"],
            outputs={k: dict(v) for k, v in payload.get("outputs", {}).items()},
            data=dict(payload.get("data", {})),
        )


def artifact(layout: DataLayout, path: Path, memo: FileHashMemo) -> dict[str, str]:
    """A manifest entry for a file just written."""
    return {"path": layout.relative(path), "sha256": memo.hash_file(path)}


class StageCache:
    """Looks up, verifies and stores manifests for one data root."""

    def __init__(self, layout: DataLayout, memo: FileHashMemo) -> None:
        self.layout = layout
        self.memo = memo

    def _path(self, stage: str, key: str) -> Path:
        return self.layout.cache_dir(stage) / f"{key}.json"

    def problems(self, manifest: Manifest) -> list[str]:
        """Why a stored manifest can no longer be trusted (empty when it can)."""
        found: list[str] = []
        for name, ref in manifest.outputs.items():
            path = self.layout.resolve(ref["path"])
            if not path.exists():
                found.append(f"output {name!r} is missing")
            elif self.memo.hash_file(path) != ref["sha256"]:
                found.append(f"output {name!r} changed since it was written")
        return found

    def lookup(self, stage: str, key: str) -> Manifest | None:
        path = self._path(stage, key)
        if not path.exists():
            return None
        try:
            manifest = Manifest.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError):  # JSON or UTF-8 errors, a torn file
            return None
        if manifest.stage != stage or manifest.key != key or self.problems(manifest):
            return None
        return manifest

    def store(self, manifest: Manifest) -> None:
        # Not fsynced (one per scan and stage was ~1 ms, a fifth of the per-scan
        # orchestration overhead): a manifest a power cut empties or garbles is a cache
        # miss, since `lookup` reads it defensively and verifies the outputs anyway.
        write_json(self._path(manifest.stage, manifest.key), manifest.to_dict(), durable=False)

    def stored(self, stage: str) -> list[Manifest]:
        """Every manifest stored for `stage`, newest first (unverified)."""
        folder = self.layout.cache_dir(stage)
        paths = sorted((p for p in folder.glob("*.json") if not p.name.startswith(".")),
                       key=lambda p: p.stat().st_mtime_ns, reverse=True) \
            if folder.is_dir() else []
        found = []
        for path in paths:
            try:
                found.append(Manifest.from_dict(json.loads(path.read_text())))
            except (ValueError, KeyError, TypeError):
                continue
        return found
