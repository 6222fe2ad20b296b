"""Locate the ONNX files of a Hugging Face Optimum export (or an Edgewise bundle of one)."""
from __future__ import annotations

from pathlib import Path

from sdk.errors import ModelLoadError


def resolve_model_dir(name_or_path: str | Path, store=None) -> Path:
    """A folder holding the export: a local path, or the cached copy of a catalog model.

    Nothing is downloaded here (no network at run time): a model name must have been
    fetched with ``edgewise pull NAME`` first, else ``StoreError`` / ``OfflineError`` says so.
    A bundle archive (.ewb) is verified and unpacked by ``sdk.bundle.load_bundle``.
    """
    p = Path(name_or_path)
    if p.exists():
        return _as_dir(p)
    if any(sep in str(name_or_path) for sep in ("/", "\\")):
        raise FileNotFoundError(f"model folder {p} does not exist")
    from sdk.bundle import ModelStore

    store = store or ModelStore()
    return _as_dir(Path(store.path(str(name_or_path))))


def _as_dir(p: Path) -> Path:
    if p.is_dir():
        return p
    if p.suffix in (".ewb", ".zip"):
        from sdk.bundle import load_bundle

        return Path(load_bundle(p).path)
    raise ModelLoadError(f"expected a folder with an Optimum ONNX export (or a .ewb bundle), got file {p}")


def find_onnx(folder: Path, stem: str, quantized: bool | str | None = False) -> Path | None:
    """``folder/stem.onnx`` (or ``onnx/stem.onnx``); with ``quantized``, prefer ``_int8`` / ``_quantized``.

    ``quantized=None``: the fp32 file if there is one, else the INT8 one (a folder that
    ships only ``*_quantized.onnx``, as the onnx-community exports can).
    ``quantized="int4"``: only the ``_int4`` file (made by ``translate quantize --bits 4``).
    """
    q = [f"{stem}_int8.onnx", f"{stem}_quantized.onnx"]
    if quantized == "int4":
        names = [f"{stem}_int4.onnx"]
    else:
        names = q + [f"{stem}.onnx"] if quantized else [f"{stem}.onnx"] + (q if quantized is None else [])
    for sub in (folder, folder / "onnx"):
        for n in names:
            if (sub / n).is_file():
                return sub / n
    return None


def decoder_files(folder: Path, quantized: bool | str | None = False) -> dict[str, Path]:
    """{"encoder", "merged"} or {"encoder", "decoder", "decoder_with_past"} for an export folder."""
    enc = find_onnx(folder, "encoder_model", quantized)
    merged = find_onnx(folder, "decoder_model_merged", quantized)
    dec = find_onnx(folder, "decoder_model", quantized)
    past = find_onnx(folder, "decoder_with_past_model", quantized)
    if enc is None or (merged is None and dec is None):
        have = sorted(x.name for x in folder.rglob("*.onnx"))
        raise ModelLoadError(
            f"{folder} is not an Optimum encoder-decoder export: expected encoder_model.onnx and "
            f"decoder_model_merged.onnx (or decoder_model.onnx + decoder_with_past_model.onnx), found {have}")
    if merged is not None:
        return {"encoder": enc, "merged": merged}
    files = {"encoder": enc, "decoder": dec}
    if past is not None:
        files["decoder_with_past"] = past
    return files
