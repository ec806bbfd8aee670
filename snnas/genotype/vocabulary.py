"""The genotype's vocabulary: every allowed value of every gene, and the paper's named blocks.

Kept apart from the data classes so that spaces, validation and the compiler read one table.
"""
from __future__ import annotations

import math

FORMAT_VERSION = 1

NEURONS = ("if", "lif", "gwr")
STEMS = ("imagenet", "small", "half")
AUTO_STEM = "auto"
# Images up to this side are "small": the ImageNet stem (4x down before stage 1) would leave
# 7-16 px maps there, so the one stem policy (`resolve_stem`) builds `half` instead.
SMALL_IMAGE_MAX_PX = 64
BLOCK_KINDS = ("basic", "bottleneck", "dense")
RESIDUAL_KINDS = ("basic", "bottleneck")

# A residual branch is its ops around the convolutions: `pre` ops, conv, (bn, sn, conv) repeated,
# then `post` ops. Between two convolutions there is always BN then SN. A bottleneck repeats the
# same pattern over 1x1-3x3-1x1 convolutions.
BRANCHES = {
    "conv_bn_sn_conv_bn": ((), ("bn",)),  # origin, tdbn
    "conv_bn_sn_conv": ((), ()),  # baa (its BN sits after the addition)
    "conv_bn_sn_conv_bn_sn": ((), ("bn", "sn")),  # sew
    "sn_conv_bn_sn_conv_bn": (("sn",), ("bn",)),  # pa_a
    "bn_sn_conv_bn_sn_conv": (("bn", "sn"), ()),  # pa_b, and the DenseNet layer
}
INTERBLOCKS = {"none": (), "sn": ("sn",), "bn_sn": ("bn", "sn")}
NORMS = ("bn", "tdbn")

# The paper's six residual connections (its Fig. 1) as points of the factorised block.
BLOCK_NAMES = {
    "origin": ("conv_bn_sn_conv_bn", "sn", "bn"),
    "tdbn": ("conv_bn_sn_conv_bn", "sn", "tdbn"),
    "baa": ("conv_bn_sn_conv", "bn_sn", "bn"),
    "sew": ("conv_bn_sn_conv_bn_sn", "none", "bn"),
    "pa_a": ("sn_conv_bn_sn_conv_bn", "none", "bn"),
    "pa_b": ("bn_sn_conv_bn_sn_conv", "none", "bn"),
}
# DenseNet's layer (BN-SN-1x1 conv-BN-SN-3x3 conv, no identity) under the `dense` kind.
DENSE_LAYER = ("bn_sn_conv_bn_sn_conv", "none", "bn")
DENSE_NAMES = {"densenet": DENSE_LAYER}

CONNECTS = ("chain", "dense_add", "dense_concat", "edges")
EDGE_OPS = ("add", "concat")
# After a stage: nothing; a BN-SN-1x1 conv back to the blocks' width; or DenseNet's transition
# (BN-SN-1x1 conv halving the channels, then 2x2 average pooling).
TRANSITIONS = ("none", "project", "pool")
STRIDES = (1, 2)

EXPANSION = {"basic": 1, "bottleneck": 4, "dense": 1}
DENSE_BOTTLENECK = 4  # DenseNet's bn_size: the 1x1 conv widens to 4 x growth rate
TRANSITION_COMPRESSION = 0.5  # DenseNet-BC's theta

NEURON_DEFAULTS = {
    "kind": "if",
    "v_threshold": 1.0,
    "v_reset": 0.0,
    "tau": 2.0,
    "surrogate_alpha": 4.0,
    "detach_reset": True,
}

# The window-recurrent neuron's settings (snnas.compiler.gwr): windows per axis, dilation policy,
# carry decay, radian factor, projection and condense rule. Fields of the `gwr` kind only: other
# kinds keep them at these defaults and leave them out of their JSON, so their keys never change.
GWR_DEFAULTS = {
    "g": 2,
    "dil": "alt",
    "lam": 0.4,
    "theta": math.pi / 4,
    "proj": "sincos",
    "condense": "or",
}
GWR_MAX_GROUPS = 16
GWR_DILATIONS = ("off", "on", "alt")
GWR_PROJECTIONS = ("sincos", "mean", "none")
GWR_CONDENSES = ("or", "mean")


def block_name(kind: str, branch: str, interblock: str, norm: str) -> str | None:
    """The paper's name for these factors, or None where they make no named block."""
    table = DENSE_NAMES if kind == "dense" else BLOCK_NAMES
    for name, factors in table.items():
        if factors == (branch, interblock, norm):
            return name
    return None


def is_identity_residual(kind: str, interblock: str) -> bool:
    """Blocks whose output is input + branch with nothing after the sum (sew, pa_a, pa_b)."""
    return kind in RESIDUAL_KINDS and interblock == "none"


def resolve_stem(requested: str, own: str, resolution: int | None) -> str:
    """The stem a network is built with: the one policy of spaces, search trials and retraining.

    An explicit ``requested`` stem wins. ``"auto"`` keeps ``own`` except that the ImageNet stem
    becomes ``half`` (a 3x3/2 conv, stage 1 at half the image side) on images up to
    ``SMALL_IMAGE_MAX_PX``. Measured on Fashion-MNIST (DANet-A ResNet-18, width 1/4, 5 epochs):
    ``half`` 88.2% test accuracy against 87.5% for the ImageNet stem at 1.3x its cost, while
    ``small`` (stage 1 at the full 28 px) costs about 3-4x ``half`` per image.
    """
    if requested != AUTO_STEM:
        return requested
    if own == "imagenet" and resolution is not None and resolution <= SMALL_IMAGE_MAX_PX:
        return "half"
    return own
