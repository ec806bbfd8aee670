"""The training-memory estimate against what autograd actually keeps: every block type, with IF,
LIF and the window-recurrent neuron (whose windows keep far more per element than IF does)."""
from __future__ import annotations

import pytest
import torch

from snnas.compiler import build_model
from snnas.compiler.size import estimate
from snnas.genotype import Genotype

STAGES = {  # every block type, two blocks a stage, on 28 down to 4 px
    **{b: "|".join(f"basic.{b}.{w}x2.s{s}.chain" for w, s in ((16, 1), (16, 2), (32, 2), (32, 2)))
       for b in ("origin", "tdbn", "baa", "sew", "pa_a", "pa_b")},
    "bottleneck": "|".join(f"bottleneck.origin.8x2.s{s}.chain" for s in (1, 2, 2, 2)),
    "dense": "|".join(["dense.densenet.16x2.s1.dense_concat.pool"] * 2 + ["dense.densenet.16x2.s1.dense_concat"]),
}
NEURONS = ["if", "lif", "gwr", "gwr(dil=on)", "gwr(g=4)", "gwr(proj=mean)"]


def saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd keeps for the backward of one forward pass."""
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        model(x)
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in kept}.values())


@pytest.mark.parametrize("neuron", NEURONS)
@pytest.mark.parametrize("block", sorted(STAGES))
def test_the_activation_estimate_is_within_a_factor_1_6_of_what_autograd_keeps(block, neuron, one_thread):
    genotype = Genotype.from_str(f"{neuron}|half16|{STAGES[block]}")
    torch.manual_seed(0)
    model = build_model(genotype, num_classes=10, in_channels=1, timesteps=2)
    measured = saved_bytes(model, torch.rand(3, 1, 28, 28))
    estimated = estimate(genotype, in_channels=1, num_classes=10, resolution=28, timesteps=2, batch_size=3)
    assert 0.67 <= estimated.activation_bytes / measured <= 1.6, (estimated.activation_bytes, measured)
