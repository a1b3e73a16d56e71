"""Full fine-tuning: every weight trains; the reference every other method is measured against."""

from harness.methods import register
from harness.methods.base import MethodSpec


def _apply(model, params, ctx):
    for param in model.parameters():
        param.requires_grad = True
    return model


register(MethodSpec(
    name="full",
    family="reference",
    summary="full fine-tuning: all parameters train",
    apply=_apply,
    training={"learning_rate": 5e-5},
))
