"""Model card text written into each bundle (``MODEL_CARD.md``)."""
from __future__ import annotations

from apps.medical_imaging.evaluate import table
from apps.medical_imaging.train_config import TrainConfig

COMMAND = "nice -n 10 .venv/bin/python -m apps.medical_imaging.train --task {task} --out apps/medical_imaging/bundles"


def _cpu() -> str:
    try:
        from sdk.runtime import discover_device

        d = discover_device()
        isa = ", ".join(k for k, v in d.isa.items() if v and k in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx"))
        return f"{d.cpu_model}, {isa or 'no AVX2'}"
    except Exception:  # informative only
        return "CPU not identified"


def model_card(name: str, r: dict, rows: list[dict], metrics: dict, cfg: TrainConfig) -> str:
    task = cfg.task_spec
    pol = r["policy"]
    ood = r["extra"]["ood"]
    aur = ", ".join(f"{k}: {v:.4f}" for k, v in ood["auroc"].items())
    opt = (r["extra"]["training"] or {}).get("optimize") or {}
    cand = "\n".join(f"| {c['name']} | {c['metric'] if c['metric'] is None else round(c['metric'], 4)} | "
                     f"{c['latency_ms'] if c['latency_ms'] is None else round(c['latency_ms'], 4)} | "
                     f"{c['size_bytes']} | {c['error'] or ''} |" for c in opt.get("candidates", []))
    budget = opt.get("budget", cfg.max_auc_drop)
    budget = f"{budget:.4f}" if isinstance(budget, (int, float)) else "default"
    opt_text = (f"\n## Optimization search (sdk.compress.optimize, AUC budget {budget})\n\n"
                f"{opt.get('note', '')}\n\n| candidate | val AUC | latency ms | bytes | error |\n"
                "|---|---|---|---|---|\n"
                f"{cand}\n") if opt else ""
    return f"""# {name} — model card

**Reference design — not a medical device.** Not cleared or approved for clinical use. It
orders a reading queue; every study is still read by a clinician.

{r['description']}.

## Intended use
{task.intended_use}

## Data
{task.data_text}

## Validation results (val split, {rows[0]['n']} images)
Operating point chosen for sensitivity >= {pol['target_sensitivity']} on val:
threshold {pol['threshold']:.4f} on the calibrated probability (temperature {pol['temperature']:.3f}).

```
{table(rows)}
```

This bundle: AUC {metrics['val_auc']:.4f}, sensitivity {metrics['val_sensitivity']:.4f},
specificity {metrics['val_specificity']:.4f}, ECE {metrics.get('val_ece', float('nan')):.4f}
(uncalibrated {metrics.get('val_ece_uncalibrated', float('nan')):.4f}).
Abstain band [{pol['abstain_low']:.4f}, {pol['abstain_high']:.4f}) covers
{metrics['val_abstain_rate']:.1%} of val; on the rest sensitivity {metrics['val_sensitivity_decided']:.4f},
specificity {metrics['val_specificity_decided']:.4f}. Urgent at p >= {pol['urgent']:.4f}
({metrics['val_urgent_rate']:.1%} of val). Public reference (MedMNIST v2, test split):
{task.reference} — our figures are on the validation split, which is also used for calibration, so they are
optimistic; the held-out test split is the fair comparison. Latency: batch 1, one onnxruntime thread, on
the training host ({_cpu()}), p50.

## Out-of-distribution gate
Mahalanobis distance of the penultimate features (class means, shared shrunk covariance,
train split); threshold {ood['threshold']:.2f} = the {ood['quantile']:.0%} quantile of val scores
(so about 1% of genuine val images are refused). Detection AUROC (val vs probe set): {aur}.

## Limitations
28x28 inputs lose fine detail; paediatric data from one centre; labels from reports;
class balance of the data (74% pneumonia) is not a clinic's; calibration holds for this
distribution only; the abstain band and OOD gate reduce but do not remove silent errors.
{opt_text}
## Reproduce
```
{COMMAND.format(task=task.name)}
```
Seeds fixed (seed {cfg.seed}), torch on one thread, deterministic algorithms; teacher
{cfg.teacher_epochs} epochs, student {cfg.student_epochs} epochs of distillation. The optimize step's
choice depends on latency measured on the host; the AUC of each candidate does not.
"""
