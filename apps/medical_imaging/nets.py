"""Torch networks of the training recipe: a small ResNet teacher and a compact student.

Imported only by :mod:`apps.medical_imaging.train` (torch is the ``train`` extra); the app
itself runs the exported ONNX student through onnxruntime.
"""
from __future__ import annotations

from sdk.errors import require

torch = require("torch", "train", "training the medical imaging models")
nn = torch.nn
F = torch.nn.functional

TEACHER_WIDTH, STUDENT_WIDTH = 24, 16   # channels of the first stage of each network


class _Block(nn.Module):
    """ResNet basic block (two 3x3 convs, batch norm, identity or 1x1 projection)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        return F.relu(y + (x if self.proj is None else self.proj(x)))


class Teacher(nn.Module):
    """ResNet-ish teacher for 1x28x28 inputs: 3 stages (w, 2w, 4w), global pooling, dropout."""

    def __init__(self, width: int = 32, num_classes: int = 2, dropout: float = 0.2):
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.layers = nn.Sequential(_Block(w, w), _Block(w, 2 * w, 2), _Block(2 * w, 4 * w, 2))
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        f = F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1)
        return self.fc(self.drop(f))


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Student(nn.Module):
    """Compact plain CNN (about 5 M multiply-adds at 28x28).

    ``forward`` returns logits (what distillation trains); :class:`StudentExport` wraps it to
    also return the pooled ``features`` the app's out-of-distribution score uses.
    """

    def __init__(self, width: int = 16, num_classes: int = 2):
        super().__init__()
        w = width
        self.body = nn.Sequential(_cbr(1, w), _cbr(w, 2 * w, 2), _cbr(2 * w, 2 * w),
                                  _cbr(2 * w, 4 * w, 2), _cbr(4 * w, 4 * w))
        self.fc = nn.Linear(4 * w, num_classes)

    def features(self, x):
        return F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)

    def forward(self, x):
        return self.fc(self.features(x))


class StudentExport(nn.Module):
    """Export wrapper: ``(logits, features)`` so one ONNX run gives the score and the OOD input."""

    def __init__(self, student: Student):
        super().__init__()
        self.student = student

    def forward(self, x):
        f = self.student.features(x)
        return self.student.fc(f), f


class TeacherExport(nn.Module):
    """Export wrapper giving the teacher the same two outputs as the student."""

    def __init__(self, teacher: Teacher):
        super().__init__()
        self.teacher = teacher

    def forward(self, x):
        t = self.teacher
        f = F.adaptive_avg_pool2d(t.layers(t.stem(x)), 1).flatten(1)
        return t.fc(f), f
