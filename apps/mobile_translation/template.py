"""This app as a template for ``edgewise new NAME --from mobile_translation``: a text
interpreter (phrasebook first, then OPUS-MT ONNX or Apertium) with an evaluation recipe
(chrF and exact matches on the user's own phrase pairs). The live speech path is not part
of the template (see the generated README)."""
from pathlib import Path

from sdk.templates import TemplateSpec

TEMPLATE = TemplateSpec(
    name="mobile_translation",
    summary="text interpreter: domain phrasebook, then OPUS-MT ONNX or Apertium; chrF evaluation on your pairs",
    package="apps.mobile_translation",
    package_dir=Path(__file__).resolve().parent,
    copy_modules=("mt", "seq2seq.py", "onnx_files.py", "phrasebook.py", "text_chain.py", "mt_eval.py"),
    renames={"edgewise translate ": "python -m {{name}} "},
)
