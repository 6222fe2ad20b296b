"""Chest X-ray triage reference app: quality gate, calibrated model, abstention, worklist,
occlusion heatmaps, HTML report and a hash-chained audit log. Reference design — not a
medical device.

    edgewise medical triage PATH --out DIR [--watch] [--include-identifiers]
"""
