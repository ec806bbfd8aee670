"""Every compile-time choice the paper leaves open, in one place.

- Shortcut of a block with a projection (stride 2 or a width change): the branch's own ops around
  a single 1x1 conv, and always one BN — conv+BN for origin/tdbn/baa (the standard ResNet
  shortcut), conv+BN+SN for sew (as SpikingJelly's SEW-ResNet), SN-conv-BN for pa_a and BN-SN-conv
  for pa_b (each pre-activation block's own order).
- tdBN (Zheng et al.): a BN's weight starts at alpha * V_th, alpha = 1/sqrt(2) for the BNs whose
  output is summed at the addition (branch end, shortcut), 1 elsewhere.
- The stem is conv + BN (+ max-pool for ``imagenet``), followed by an SN unless the first block
  is a pre-activation residual block (its branch starts with SN or BN and it has no interblock
  module): such a network passes analog values, so its stem ends in BN.
- The head is global average pooling and a linear classifier applied at every step, averaged
  over T. After dense-layer stages (DenseNet) a BN + SN precedes the pooling (torchvision's
  ``norm5`` + ReLU).
- Convolutions start with Kaiming-normal (fan_out) weights, as torchvision's and SpikingJelly's
  ResNets; BN weights 1 and biases 0 (tdBN as above); the classifier keeps PyTorch's default.
- Direct encoding: the image is repeated over T; because the stem's conv and BN see T identical
  frames, they run once on the image and the result is repeated (same outputs, T x less work;
  the BN's running variance uses N rather than T*N samples for its unbiased correction).
"""
from __future__ import annotations

import math

SHORTCUT_OPS = {
    "conv_bn_sn_conv_bn": ("conv", "bn"),
    "conv_bn_sn_conv": ("conv", "bn"),
    "conv_bn_sn_conv_bn_sn": ("conv", "bn", "sn"),
    "sn_conv_bn_sn_conv_bn": ("sn", "conv", "bn"),
    "bn_sn_conv_bn_sn_conv": ("bn", "sn", "conv"),
}

TDBN_ALPHA_AT_SUM = 1.0 / math.sqrt(2.0)
TDBN_ALPHA_ELSEWHERE = 1.0

IMAGENET_STEM = dict(kernel_size=7, stride=2, padding=3)
IMAGENET_STEM_POOL = dict(kernel_size=3, stride=2, padding=1)
SMALL_STEM = dict(kernel_size=3, stride=1, padding=1)
HALF_STEM = dict(kernel_size=3, stride=2, padding=1)

# Each stem kind: the stem convolution's arguments and the max-pool after its SN (None: no pool).
# "imagenet" shrinks the image 4x before the first stage (the paper's), "small" keeps it whole
# (CIFAR practice) and "half" halves it with a strided 3x3 convolution: on 28-32 px images stage 1
# then runs on 14-16 px maps instead of 7-8 px, at about a third of the small stem's cost.
STEM_LAYOUTS = {
    "imagenet": (IMAGENET_STEM, IMAGENET_STEM_POOL),
    "small": (SMALL_STEM, None),
    "half": (HALF_STEM, None),
}

HEAD_PREACT_KINDS = frozenset({"dense"})
