"""NIR round trip of a network trained on CUDA (the trainer's defaults there: float16 autocast,
``channels_last``): the exported graph, read back and run by SpikingJelly's importer on the CPU,
gives the logits the network gives on the GPU."""
from __future__ import annotations

import pytest
import torch

from snnas import build_model, get_preset
from snnas.nir_export import export_graph, run_graph
from snnas.train import TrainConfig, Trainer
from tests.devices import CUDA, exact_kernels

nir = pytest.importorskip("nir")
pytestmark = CUDA

# float32 inference on both sides (TF32 off): the CUDA kernels and the CPU graph differ in rounding
# only, and at this size no membrane lies that close to the threshold
TOLERANCE = 1e-5
RES, T, CLASSES = 16, 2, 5
# 4 epochs of 4 steps: enough for every stage to spike on these images (2 leave deep stages silent)
TRAINING = TrainConfig(epochs=4, batch_size=16, lr_per_256=0.8, warmup_epochs=0, augment="none", precise_bn_images=0)


@pytest.mark.parametrize("preset", ["danet_c_resnet18", "pa_b_resnet18", "sew_resnet18"])
def test_a_network_trained_on_cuda_equals_its_nir_graph(preset, tmp_path):
    torch.manual_seed(0)
    model = build_model(get_preset(preset).replace(stem="half"), num_classes=CLASSES, in_channels=1, timesteps=T,
                        width_mult=0.0625)
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(64, 1, RES, RES, generator=g) * 2, torch.randint(0, CLASSES, (64,), generator=g)
    batches = [(images[i:i + 16], labels[i:i + 16]) for i in range(0, 64, 16)]
    x = torch.randn(6, 1, RES, RES, generator=g) * 2
    with exact_kernels("cuda"):
        Trainer(model, TRAINING, device="cuda", progress=False).fit(batches)
        with torch.no_grad():
            expected = model.eval()(x.cuda()).cpu()
    assert (expected.std(0) > 1e-4).any(), "the outputs do not depend on the input: the comparison would be empty"
    path = tmp_path / "net.nir"
    export_graph(model.cpu(), RES, path)  # the exporter reads weights on the CPU, as `snnas nir` loads them
    got = run_graph(nir.read(str(path)), x, T)
    assert torch.allclose(got, expected, atol=TOLERANCE), (got - expected).abs().max()
