"""Batch jobs over archives, on Ray Data (extra ``cluster``: ``pip install 'edgewise[cluster]'``).

```python
from sdk.batch import JobSpec, ItemResult, run_job
spec = JobSpec(name="medical", processor="apps.medical_imaging.batch:MedicalProcessor",
               model_name="pneumonia-triage@1.0.0", model_hash="<sha256>", scores=["probability"])
summary = run_job(spec, "archive/", "results/", workers=2)       # address="ray://head:10001" for a cluster
```

Ray and pyarrow are imported only when a job runs; where they are missing the call raises
``DependencyMissingError`` naming the extra. Modules: ``items`` (listing, content hashes),
``job`` (JobSpec, ItemResult, the processor protocol), ``worker`` (the actor), ``results``
(Parquet parts, resume index), ``progress``, ``runner``, ``command`` (CLI plumbing for apps), ``scratch`` (a
worker's folder for side files).

Apps add ``edgewise batch <job>`` with a module ``<app package>/batch.py`` defining
``register_batch(subparsers)`` (found next to the app's ``edgewise.commands`` entry point).
"""
from sdk.batch.command import add_batch_arguments, run_from_args
from sdk.batch.items import Item, content_sha256, list_items
from sdk.batch.job import BASE_COLUMNS, ItemResult, JobSpec, Processor, bundles_hash
from sdk.batch.progress import Progress
from sdk.batch.results import ResultStore
from sdk.batch.runner import BatchSummary, run_job
from sdk.batch.scratch import scratch_dir

__all__ = [
    "JobSpec", "ItemResult", "Processor", "BASE_COLUMNS", "bundles_hash",
    "Item", "list_items", "content_sha256",
    "ResultStore", "Progress", "BatchSummary", "run_job",
    "add_batch_arguments", "run_from_args", "scratch_dir",
]
