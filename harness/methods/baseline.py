"""Reference rows for every leaderboard, so that no method's number stands alone: the untrained
model (`none`: the base model with its task head as initialised, scored without a training step)
and the trivial predictor (`trivial`: the majority class for classification and QA, the document's
leading sentences for summarization), each scored on the same validation and test splits as the
methods. A method that does not beat them has learned nothing worth paying for."""

from __future__ import annotations

from harness.methods import register
from harness.methods.base import MethodSpec


def _untouched(model, params, ctx):
    for param in model.parameters():
        param.requires_grad = False
    return model


register(MethodSpec(
    name="none", family="baseline", apply=_untouched, baseline="untrained",
    summary="baseline: the untrained model (zero-shot decoders; encoders with their head as initialised)",
))
register(MethodSpec(
    name="trivial", family="baseline", apply=_untouched, baseline="trivial",
    summary="baseline: the task's trivial predictor, no model (majority class; lead sentences for summaries)",
))
