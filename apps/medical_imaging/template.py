"""This app as a template for ``edgewise new NAME --from medical_imaging``: the triage stack
(gate, calibrated policy with abstention, OOD check, worklist, report, audit) copied with
renames, trained on the user's class folders by :mod:`folder_recipe`."""
from pathlib import Path

from sdk.templates import TemplateSpec

TEMPLATE = TemplateSpec(
    name="medical_imaging",
    summary="image triage: two classes from class folders; gate, calibrated priority, abstain, worklist, audit",
    package="apps.medical_imaging",
    package_dir=Path(__file__).resolve().parent,
    copy_modules=("triage.py", "model.py", "gate.py", "policy.py", "metrics.py", "ood.py", "io",
                  "worklist.py", "worklist_db.py", "report.py", "audit.py", "audit_key.py", "explain.py",
                  "nets.py", "train_torch.py", "folders.py", "folder_recipe.py"),
    renames={"edgewise medical ": "python -m {{name}} ", "\"pneumonia-triage\"": "\"model\""},
)
