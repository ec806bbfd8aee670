"""The paper's measurements as tools: firing rates, gradient stability, SOPs/energy, SAHD.

Every function takes a network that follows the ``SpikingNet`` contract (``model(x)`` on images
``[N, C, H, W]``, neurons reset by the model, SpikingJelly neurons in multi-step mode) and an
image batch, runs it without gradients, and leaves the model exactly as it found it (mode and
BatchNorm running statistics restored). ``bn_stats="batch"`` (default) normalises with the
batch's statistics as training does, the meaningful view at initialisation; ``"running"`` uses
the stored statistics, as inference on a trained network does.
"""
from snnas.metrics.energy import E_AC_PJ, E_MAC_PJ, ENERGY_SOURCE, energy_mj
from snnas.metrics.firing import FiringReport, LayerFiring, firing_rates
from snnas.metrics.gradient import GradStabilityReport, LayerGradStability, gradient_stability
from snnas.metrics.latency import Latency, inference_latency
from snnas.metrics.layers import SpikingLayer
from snnas.metrics.ops import OpsReport, count_ops
from snnas.metrics.profile import Profile, profile
from snnas.metrics.sahd import sahd_from_patterns, sahd_kernel, sahd_score

__all__ = ["E_AC_PJ", "E_MAC_PJ", "ENERGY_SOURCE", "energy_mj", "FiringReport", "LayerFiring", "firing_rates",
           "GradStabilityReport", "LayerGradStability", "gradient_stability", "Latency", "inference_latency", "SpikingLayer", "OpsReport",
           "count_ops", "Profile", "profile", "sahd_from_patterns", "sahd_kernel", "sahd_score"]
