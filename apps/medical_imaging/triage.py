"""Triage orchestration: files -> gate -> model -> policy -> worklist, report and audit.

One bad file never stops a run: every failure becomes a ``not_analysed`` study with a
reason (a file that disappears between the scan and the read, a FIFO, a device, an
unreadable or oversize file included). Each study is committed to the folder's SQLite
worklist (:mod:`apps.medical_imaging.worklist_db`) in its own transaction as soon as it is
decided, then audited; ``worklist.json``, ``worklist.csv`` and ``report.html`` are views
regenerated from the database after each batch, every ``VIEW_EVERY`` studies, on SIGINT
and when a study fails unexpectedly, so a crash loses nothing already decided, and runs
into the same ``--out`` (one after the other, at the same time, or ``--watch``) add to one
worklist instead of replacing it.

For callers that triage one file at a time: ``Triage(out, bundles).process(path) -> Study``
(never raises for a bad input; the study is stored and audited before it returns).
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

import sdk
from apps.medical_imaging import gate
from apps.medical_imaging.audit import AuditLog
from apps.medical_imaging.audit_key import write_secret_once
from apps.medical_imaging.explain import display_image, occlusion_map, overlay
from apps.medical_imaging.io.loaders import Header, Limits, decode, read_header
from apps.medical_imaging.model import TriageModel, default_bundles
from apps.medical_imaging.report import write_csv, write_html, write_json
from apps.medical_imaging.worklist import Clock, Study, order
from apps.medical_imaging.worklist_db import WorklistDB
from sdk.closing import Closing
from sdk.errors import DecodeError
from sdk.pipeline import walk_folder

log = logging.getLogger("edgewise")

EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom", ""}
VIEW_EVERY = 25  # regenerate the views after this many studies within one batch


def scan(root: str | Path, skip: Path | None = None) -> list[Path]:
    """Files to triage under ``root`` (a file, or a folder searched recursively), sorted.

    Hidden files and anything under ``skip`` (the output folder) are left out; files whose
    suffix is not an image/DICOM one are ignored (DICOM files often have no suffix: kept).
    """
    root = Path(root)
    if root.is_file() or (root.exists() and not root.is_dir()):
        return [root]  # a FIFO or device named directly gets its reason from process()
    if not root.is_dir():
        raise FileNotFoundError(f"no such file or folder: {root}")
    return walk_folder(root, EXTENSIONS, skip)


def _path_key(path: Path) -> str:
    """Identity of a file without a DICOM UID: its resolved path, except for what is not a
    regular file (two symlinks to /dev/zero are two entries, not one)."""
    return str(path.resolve()) if path.is_file() else os.path.abspath(path)


class Triage(Closing):
    """A triage session writing into ``out_dir``.

    ``bundles``: triage bundles served by modality (a DICOM goes to the first bundle that
    accepts its Modality; plain images to the first that accepts "image").
    """

    def __init__(self, out_dir: str | Path, bundles: Sequence[str | Path] | None = None, *,
                 include_identifiers: bool = False, limits: Limits | None = None,
                 max_wait_minutes: float | None = 60.0, clock: Clock | None = None,
                 heatmaps: bool = True):
        self.out = Path(out_dir)
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"output folder {self.out} exists and is not a folder; pass a folder to --out")
        for sub in ("", "images", "heatmaps"):
            (self.out / sub).mkdir(parents=True, exist_ok=True)
        self.models = [TriageModel(b) for b in (default_bundles() if bundles is None else bundles)]
        if not self.models:
            raise ValueError("at least one bundle is needed")
        self.include_identifiers = include_identifiers
        self.limits = limits or Limits()
        self.max_wait = max_wait_minutes
        self.clock = clock or Clock()
        self.heatmaps = heatmaps
        self.db = WorklistDB(self.out)
        self.audit = AuditLog(self.out / "audit.jsonl")
        self.salt = self._salt()
        self.studies: list[Study] = []   # what this session decided (the worklist holds all runs)
        self._watch_done: dict[Path, tuple[int, int]] = {}
        self._watch_pending: dict[Path, tuple[int, int]] = {}

    # --- identity -----------------------------------------------------------------------
    def _salt(self) -> bytes:
        """The folder's pseudonymisation salt, created once even by two runs starting together
        (written to a private temporary file, then hard-linked into place: only one link wins)."""
        p = self.out / ".salt"
        if not p.is_file():
            write_secret_once(p, 16)
        return p.read_text().strip().encode()

    def study_id(self, key: str) -> str:
        return hashlib.sha256(self.salt + key.encode()).hexdigest()[:16]

    # --- one file -----------------------------------------------------------------------
    def _pick(self, hdr: Header) -> tuple[TriageModel | None, str]:
        want = hdr.modality if hdr.kind == "dicom" else "image"
        for m in self.models:
            if want in m.accepts.modalities:
                return m, ""
        if len(self.models) == 1:
            return None, gate.check_header(hdr, self.models[0].accepts).reason
        acc = sorted({x for m in self.models for x in m.accepts.modalities if x != "image"})
        return None, f"modality {want} not accepted by any model (accepts {', '.join(acc)})"

    def process(self, path: Path) -> Study:
        """Triage one file; never raises for a bad input. The study is committed to the
        worklist database and audited before this returns; returns what was decided."""
        arrival = self.clock.now()
        base = dict(arrival=arrival, arrival_seq=self.db.next_arrival(arrival))
        if self.include_identifiers:
            base["source"] = str(path)
        study, model = self._decide(Path(path), base)
        return self._finish(study, model)

    def _decide(self, path: Path, base: dict) -> tuple[Study, TriageModel | None]:
        hdr = None
        model = None
        try:
            hdr = read_header(path, self.limits)
            base.update(study_id=self.study_id(hdr.uid or _path_key(path)), modality=hdr.modality,
                        input_sha256=hdr.sha256, frames=hdr.frames)
            if self.include_identifiers:
                base["identifiers"] = hdr.identifiers
            model, why = self._pick(hdr)
            if model is None:
                return self._refuse(base, why), model
            base["model"] = f"{model.name}@{model.version}"
            g = gate.check_header(hdr, model.accepts)
            if not g.ok:
                return self._refuse(base, g.reason), model
            dec = decode(hdr, self.limits)
            base["notes"] = list(dec.notes)
            if hdr.kind == "dicom" and not hdr.body_part:
                base["notes"].insert(0, "BodyPartExamined absent: body part not checked")
            g = gate.check_pixels(dec, model.quality)
            if not g.ok:
                if dec.frames and np.isfinite(dec.frames[0]).all():
                    base["thumbnail"] = self._save("images", base, display_image(dec.frames[0]))
                return self._refuse(base, g.reason), model
            return self._analyse(model, dec.frames, base), model
        except FileNotFoundError:
            base.setdefault("study_id", self.study_id(_path_key(path)))
            return self._refuse(base, "file vanished before it could be read"), model
        except DecodeError as exc:
            base.setdefault("study_id", self.study_id(_path_key(path)))
            return self._refuse(base, str(exc)), model
        except Exception as exc:  # noqa: BLE001 - one bad study must never stop the batch
            base.setdefault("study_id", self.study_id(_path_key(path)))
            log.warning("triage of a study failed: %s: %s", type(exc).__name__, exc)
            log.debug("traceback of the failed study", exc_info=True)   # -vv shows it; never by default
            return self._refuse(base, f"could not be analysed: {type(exc).__name__}: {exc}"), model

    def _refuse(self, base: dict, reason: str) -> Study:
        return Study(**base, status="not_analysed", priority="review", probability=None, reasons=[reason])

    def _analyse(self, model: TriageModel, frames: list[np.ndarray], base: dict) -> Study:
        p, ood, _ = model.predict(frames)
        if not np.isfinite(p).all():
            return self._refuse(base, "model output is not a finite number")
        k = int(np.argmax(p))
        base["thumbnail"] = self._save("images", base, display_image(frames[k]))
        if len(frames) > 1:
            base["notes"] = base.get("notes", []) + [f"frame {k} reported (highest probability)"]
        worst = float(np.max(ood))
        g = gate.check_ood(worst, model.ood.threshold)
        base["ood_score"] = round(worst, 3)
        if not g.ok:
            return self._refuse(base, g.reason)
        d = model.policy.decide(float(p[k]))
        study = Study(**base, status=d.status, priority=d.priority, probability=d.probability,
                      reasons=[d.reason])
        if self.heatmaps and d.priority in ("urgent", "review"):
            heat, _ = occlusion_map(model, frames[k])
            study.heatmap = self._save("heatmaps", base, overlay(frames[k], heat))
        return study

    def _save(self, sub: str, base: dict, img: np.ndarray) -> str:
        rel = f"{sub}/{base['study_id']}-{base['arrival_seq']}.png"
        cv2.imwrite(str(self.out / rel), img)
        return rel

    def _finish(self, study: Study, model: TriageModel | None) -> Study:
        m = model or self.models[0]
        self.db.upsert(study, self.clock.now())      # one transaction: the study is in the worklist
        self.audit.append(
            time=self.clock.now().isoformat(), model=m.name, model_version=m.version,
            sdk_version=sdk.__version__, model_sha256=m.sha256, input_sha256=study.input_sha256,
            study_id=study.study_id,
            decision={"priority": study.priority, "probability": study.probability},
            status=study.status, reason="; ".join(study.reasons))
        self.studies.append(study)
        log.info("%s: %s %s %s", study.study_id, study.status, study.priority, "; ".join(study.reasons))
        return study

    # --- batches ------------------------------------------------------------------------
    def run(self, paths: Iterable[Path], progress: bool = False) -> list[Study]:

        from sdk.progress import progress_bar

        paths = list(paths)
        new: list[Study] = []
        try:
            for p in progress_bar(paths, desc="triage", enabled=progress):
                new.append(self.process(p))
                if len(new) % VIEW_EVERY == 0 and len(new) < len(paths):
                    self.write_outputs()
        finally:  # SIGINT or a failure outside one study: the views still show what is done
            self.write_outputs()
        return new

    @contextmanager
    def _views_lock(self):
        """Serialise view regeneration across processes, so the last writer writes the newest state."""
        with open(self.out / ".views.lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def write_outputs(self, now: datetime | None = None) -> list[Study]:
        """Regenerate ``worklist.json``, ``worklist.csv`` and ``report.html`` from the database
        (every study of every run into this folder); returns the studies in reading order."""
        now = now or self.clock.now()
        with self._views_lock():
            ordered = order(self.db.studies(), now, self.max_wait)
            meta = {"generated": now.isoformat(), "sdk_version": sdk.__version__,
                    "models": ", ".join(f"{m.name}@{m.version}" for m in self.models),
                    "max_wait_minutes": self.max_wait, "disclaimer": "Reference design - not a medical device"}
            write_json(self.out / "worklist.json", ordered, meta)
            write_csv(self.out / "worklist.csv", ordered)
            write_html(self.out / "report.html", ordered, meta)
        return ordered

    def watch(self, folder: str | Path, interval: float = 2.0, max_polls: int | None = None,
              should_stop: Callable[[], bool] = lambda: False) -> None:
        """Poll ``folder``; triage each new or changed file once its size is stable over two polls."""
        folder = Path(folder)
        done, pending = self._watch_done, self._watch_pending   # kept across calls
        polls = 0
        while not should_stop() and (max_polls is None or polls < max_polls):
            polls += 1
            ready = []
            for p in scan(folder, skip=self.out):
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                sig = (st.st_size, st.st_mtime_ns)
                if done.get(p) == sig:
                    continue
                if pending.get(p) == sig:
                    ready.append(p)
                    done[p] = sig
                    pending.pop(p)
                else:
                    pending[p] = sig
            if ready:
                self.run(ready)
                log.info("watch: %s new file(s) triaged, %s in the worklist", len(ready), self.db.count())
            if max_polls is None or polls < max_polls:
                time.sleep(interval)

    def close(self) -> None:
        for m in self.models:
            m.close()
        self.db.close()
