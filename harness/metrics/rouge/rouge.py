"""ROUGE as an `evaluate` metric module that loads from a local path. The scores are those of the
reference implementation, Google's `rouge-score` package: F-measure per pair, averaged over pairs
(the hub module's use_aggregator=False path, averaged; its default bootstrap aggregator draws
random resamples, so its 'mid' can differ from run to run)."""

import re

import datasets
import evaluate
from rouge_score import rouge_scorer

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _sentences_on_lines(text: str) -> str:
    # rougeLsum reads one sentence per line (as HF's summarization examples prepare it with nltk,
    # whose punkt data would need a download; a sentence-end regex does the same for plain prose).
    return "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="ROUGE-1/2/L/Lsum F-measure (rouge-score), mean over pairs",
            citation="Lin, 2004. ROUGE: A Package for Automatic Evaluation of Summaries.",
            inputs_description="predictions: list of str; references: list of str",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, rouge_types=None, use_stemmer=True, per_example=False):
        """Mean F-measure per type; per_example: also each pair's, as "per_example:<type>" lists."""
        rouge_types = rouge_types or ["rouge1", "rouge2", "rougeL", "rougeLsum"]
        scorer = rouge_scorer.RougeScorer(rouge_types=rouge_types, use_stemmer=use_stemmer)
        each = {t: [] for t in rouge_types}
        for ref, pred in zip(references, predictions):
            if "rougeLsum" in rouge_types:
                ref, pred = _sentences_on_lines(ref), _sentences_on_lines(pred)
            for t, score in scorer.score(ref, pred).items():
                each[t].append(score.fmeasure)
        n = max(len(predictions), 1)
        out = {t: sum(each[t]) / n for t in rouge_types}
        if per_example:
            out.update({f"per_example:{t}": each[t] for t in rouge_types})
        return out
