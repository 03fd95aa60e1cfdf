"""Model vectors: the id, registration metadata and static price of every shipped model.

model id = SHA-256("inferchain/model" 0x00 || SHA-256(canonical model bytes) || encoding of the ModelMeta).
"""

from __future__ import annotations

import hashlib

from tools.vectors.render import dump, render
from tools.vectors.world import World
from vm.models import MODELS_DIR, manifest
from vm.txs import compute_model_id


def generate(world: World) -> dict[str, bytes]:
    files = {m["name"]: m["file"] for m in manifest()["models"]}
    view = world.app.view()
    rows = []
    for model in world.genesis.models:
        record = view.model(model.model_id)
        if record is None:
            raise AssertionError(f"{model.name} is registered at genesis")
        bytes_hash = hashlib.sha256(model.model_bytes).digest()
        if compute_model_id(bytes_hash, model.meta) != model.model_id:
            raise AssertionError(f"{model.name}: the id does not follow from its bytes and metadata")
        if (MODELS_DIR / files[model.name]).read_bytes() != model.model_bytes:
            raise AssertionError(f"{model.name}: genesis holds other bytes than vm/models")
        rows.append({
            "name": model.name,
            "file": f"vm/models/{files[model.name]}",
            "bytes_sha256": bytes_hash.hex(),
            "meta_encoding": model.meta.encode().hex(),
            "model_id": model.model_id.hex(),
            "poi": model.poi,
            "gas_per_call": int(record.gas_per_call),
            "meta": render(model.meta),
        })
    return {"models/shipped.json": dump({
        "about": "The shipped models as registered at genesis. model_id = SHA-256('inferchain/model' 0x00 || "
                 "bytes_sha256 || meta_encoding); gas_per_call is the static price the chain computed.",
        "models": rows,
    })}
