"""The triage tasks the recipe can train: data, labels, what the bundle accepts, card text."""
from __future__ import annotations

from dataclasses import dataclass, field

SHARED = "../shared/data/medical"


@dataclass(frozen=True)
class Task:
    name: str
    data: str
    bundle: str
    teacher_bundle: str
    labels: list[str]              # [negative, positive] as served
    positive_label: int            # raw dataset label of the positive (abnormal) class
    accepts: dict
    dataset: str
    intended_use: str
    data_text: str
    ood_probes: list[str] = field(default_factory=list)
    copies: int = 2                # augmented copies of the train set for distillation
    teacher_epochs: int = 15
    reference: str = ""            # published figures to compare with
    student_epochs: int = 12


TASKS: dict[str, Task] = {
    "pneumonia": Task(
        name="pneumonia", data=f"{SHARED}/pneumoniamnist_28.npz", bundle="pneumonia-triage",
        teacher_bundle="pneumonia-teacher", labels=["normal", "pneumonia"], positive_label=1,
        accepts={"modalities": ["CR", "DX", "DR", "image"], "body_parts": ["CHEST"],
                 "photometric": ["MONOCHROME1", "MONOCHROME2"], "min_side": 28},
        dataset="PneumoniaMNIST (MedMNIST v2), 28x28, train split; val for calibration",
        intended_use=("Triage aid on a CPU-only device: put chest radiographs that likely show pneumonia "
                      "first in the reading queue. Inputs: frontal chest X-rays (DICOM CR/DX/DR, body part "
                      "CHEST, or plain grayscale images), downsampled to 28x28. Not for: diagnosis, adults "
                      "(trained on paediatric films), other body parts or modalities (refused by the gate), "
                      "lateral views, follow-up."),
        data_text=("PneumoniaMNIST (MedMNIST v2; Yang et al., Scientific Data 2023; images from Kermany et "
                   "al. 2018), CC BY 4.0. Train split (4707 images: 1213 normal, 3494 pneumonia) for "
                   "training, validation split (524: 135 / 389) for calibration, the operating point and "
                   "the OOD threshold. The official test split is held out (not used here)."),
        ood_probes=[f"{SHARED}/pathmnist_28_subset.npz", f"{SHARED}/breastmnist_28.npz"],
        reference="ResNet-18 at 28 px AUC 0.944, ResNet-50 at 224 px AUC 0.962"),
    "breast": Task(
        name="breast", data=f"{SHARED}/breastmnist_28.npz", bundle="breast-us-triage",
        teacher_bundle="breast-us-teacher", labels=["normal or benign", "malignant"], positive_label=0,
        accepts={"modalities": ["US", "image"], "body_parts": ["BREAST"],
                 "photometric": ["MONOCHROME2"], "min_side": 28},
        dataset="BreastMNIST (MedMNIST v2), 28x28, train split; val for calibration",
        intended_use=("Triage aid for portable breast ultrasound: put likely-malignant lesions first. "
                      "Inputs: grayscale B-mode breast ultrasound (DICOM US, body part BREAST, or plain "
                      "grayscale images when this bundle is the one serving plain images), 28x28. "
                      "Not for diagnosis. Trained on 546 images only: a demonstration of serving several "
                      "bundles by modality, not a usable model."),
        data_text=("BreastMNIST (MedMNIST v2; Al-Dhabyani et al. 2020), CC BY 4.0. Train split 546 images, "
                   "validation 78 (used for calibration, the operating point and the OOD threshold; with "
                   "so few images every figure has a wide confidence interval). Test split held out."),
        ood_probes=[f"{SHARED}/pathmnist_28_subset.npz", f"{SHARED}/pneumoniamnist_28.npz"],
        copies=6, teacher_epochs=40, student_epochs=30,
        reference="ResNet-18 at 28 px AUC 0.901, ResNet-50 at 224 px AUC 0.866"),
}
