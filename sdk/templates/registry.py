"""Find the installed templates: a ``template`` module (exporting ``TEMPLATE``) beside each
command group registered under the ``edgewise.commands`` entry point."""
from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from sdk.templates.spec import TemplateSpec

log = logging.getLogger("edgewise")


def find_templates() -> dict[str, TemplateSpec]:
    """Template name -> spec, in entry-point order; a broken app is logged and skipped."""
    found: dict[str, TemplateSpec] = {}
    for ep in entry_points(group="edgewise.commands"):
        package = ep.value.split(":")[0].rpartition(".")[0]
        if not package:
            continue
        module_name = f"{package}.template"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                log.warning("could not load template from %s: %s", module_name, exc)
            continue
        except Exception as exc:  # noqa: BLE001 - a broken app must not hide the others
            log.warning("could not load template from %s: %s", module_name, exc)
            continue
        spec = getattr(module, "TEMPLATE", None)
        if isinstance(spec, TemplateSpec):
            found.setdefault(spec.name, spec)
    return found


def get_template(name: str) -> TemplateSpec:
    templates = find_templates()
    if name not in templates:
        raise ValueError(f"unknown template {name!r}; expected one of {sorted(templates) or 'none installed'}"
                         " (see `edgewise new --list`)")
    return templates[name]
