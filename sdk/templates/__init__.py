"""App templates: ``edgewise new NAME --from TEMPLATE`` copies a reference app's domain modules
with renames and renders its generated files (CLI, config, recipe, tests, README).

An app declares its template in a ``template`` module beside its ``cli.py`` (found through
the ``edgewise.commands`` entry point, as ``batch`` modules are), so the SDK never names an app.
"""
from sdk.templates.app_support import load_config, require_bundle, run_group
from sdk.templates.generate import check_name, generate
from sdk.templates.registry import find_templates, get_template
from sdk.templates.spec import TemplateSpec

__all__ = ["TemplateSpec", "check_name", "find_templates", "generate", "get_template",
           "load_config", "require_bundle", "run_group"]
