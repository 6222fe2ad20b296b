"""Model bundles (ONNX files + a manifest pinning every SHA-256) and the model store.

```python
from sdk.bundle import load_bundle, save_bundle, ModelStore
b = load_bundle("bundles/pneumonia")          # verified before onnxruntime reads a byte
with b.engine() as eng: ...
path = ModelStore().pull("yolox-nano")         # resumable, verified, atomic
```
"""
from sdk.bundle.archive import pack_bundle, unpack_bundle
from sdk.bundle.bundle import Bundle, load_bundle, save_bundle
from sdk.bundle.catalog import CatalogEntry, CatalogFile
from sdk.bundle.hashing import file_sha256
from sdk.bundle.manifest import Manifest, ModelEntry, Provenance
from sdk.bundle.store import ModelStore

__all__ = [
    "Manifest", "ModelEntry", "Provenance",
    "Bundle", "load_bundle", "save_bundle", "pack_bundle", "unpack_bundle",
    "ModelStore", "CatalogEntry", "CatalogFile",
    "file_sha256",
]
