"""Where Edgewise keeps its cache: ``$EDGEWISE_HOME`` or ``~/.cache/edgewise``."""
from __future__ import annotations

import os
from pathlib import Path


def edgewise_home() -> Path:
    """The cache root: ``$EDGEWISE_HOME`` if set, else ``~/.cache/edgewise`` (not created)."""
    env = os.environ.get("EDGEWISE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgewise"


def offline_from_env() -> bool:
    """True when ``EDGEWISE_OFFLINE=1``."""
    return os.environ.get("EDGEWISE_OFFLINE", "").strip() == "1"


def sdk_version() -> str:
    """The installed Edgewise version (``sdk.__version__``, else the distribution metadata)."""
    import sdk

    version = getattr(sdk, "__version__", None)
    if version:
        return version
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("edgewise")
    except PackageNotFoundError:
        return "unknown"
