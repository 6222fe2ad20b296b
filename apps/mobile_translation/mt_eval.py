"""Score a translator on an evaluation set (TSV of source and approved translation):
chrF (character 6-grams, beta 2, as sacrebleu's default chrF) over the corpus, exact matches
(after :func:`phrasebook.normalise`) and which engine answered each line."""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from apps.mobile_translation.phrasebook import normalise

CHAR_ORDER, BETA = 6, 2.0


def _ngrams(text: str, n: int) -> Counter:
    s = "".join(text.split())          # chrF ignores whitespace
    return Counter(s[i:i + n] for i in range(len(s) - n + 1))


def chrf(hypotheses: list[str], references: list[str]) -> float:
    """Corpus chrF in 0..100: n-gram statistics summed over lines, averaged over orders 1..6."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    precisions, recalls = [], []
    for n in range(1, CHAR_ORDER + 1):
        match = hyp_total = ref_total = 0
        for h, r in zip(hypotheses, references, strict=True):
            hc, rc = _ngrams(h, n), _ngrams(r, n)
            match += sum((hc & rc).values())
            hyp_total += sum(hc.values())
            ref_total += sum(rc.values())
        if ref_total == 0:
            continue
        precisions.append(match / hyp_total if hyp_total else 0.0)
        recalls.append(match / ref_total)
    if not recalls:
        return 0.0
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    return 0.0 if p + r == 0 else 100 * (1 + BETA**2) * p * r / (BETA**2 * p + r)


@dataclass
class EvalReport:
    lines: int
    chrf: float
    exact: float
    by_engine: dict[str, int]
    errors: int
    rows: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(chain, pairs: list[tuple[str, str]]) -> EvalReport:
    """Translate every source with ``chain`` (a :class:`text_chain.ChainTranslator`); a line no
    engine can translate counts as an empty hypothesis and an error."""
    from sdk.errors import EdgewiseError

    rows, hyps, refs = [], [], []
    for src, ref in pairs:
        try:
            tr, engine = chain.translate_with_engine(src)
            hyp, err = tr.text, None
        except EdgewiseError as exc:
            hyp, engine, err = "", None, str(exc)
        rows.append({"source": src, "reference": ref, "hypothesis": hyp, "engine": engine, "error": err,
                     "exact": normalise(hyp) == normalise(ref)})
        hyps.append(hyp)
        refs.append(ref)
    engines = Counter(r["engine"] for r in rows if r["engine"])
    return EvalReport(lines=len(rows), chrf=round(chrf(hyps, refs), 2),
                      exact=round(sum(r["exact"] for r in rows) / max(len(rows), 1), 4),
                      by_engine=dict(engines), errors=sum(r["error"] is not None for r in rows), rows=rows)
