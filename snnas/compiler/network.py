"""The compiled spiking network: stem, stages (wired by their plans) and head, multi-step."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import Any

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional, layer, neuron

from snnas.compiler import choices
from snnas.compiler.blocks import BLOCK_BUILDERS, BlockContext
from snnas.compiler.factories import NeuronFactory, neuron_factory, norm_factory
from snnas.genotype import Genotype, Stage, StagePlan
from snnas.genotype.topology import INPUT
from snnas.genotype.vocabulary import BRANCHES, RESIDUAL_KINDS


def stem_ends_in_sn(first: Stage) -> bool:
    preact = first.kind in RESIDUAL_KINDS and bool(BRANCHES[first.branch][0]) and first.interblock == "none"
    return not preact


class Stem(nn.Module):
    """conv + BN once on the image, repeated over T, then SN and the stem kind's max-pool, if any."""

    def __init__(self, kind: str, in_channels: int, width: int, with_sn: bool, make_neuron: NeuronFactory):
        super().__init__()
        conv_args, pool_args = choices.STEM_LAYOUTS[kind]
        self.conv = layer.Conv2d(in_channels, width, bias=False, step_mode="s", **conv_args)
        self.bn = layer.BatchNorm2d(width, step_mode="s")
        self.sn = make_neuron() if with_sn else None
        self.pool = None if pool_args is None else layer.MaxPool2d(step_mode="m", **pool_args)

    def forward(self, x: torch.Tensor, timesteps: int | None) -> torch.Tensor:
        """``timesteps=None``: one step of a single-step run (the neurons must be in mode 's')."""
        h = self.bn(self.conv(x))
        if timesteps is not None:
            h = h.unsqueeze(0)
            if timesteps > 1:
                h = h.expand(timesteps, *h.shape[1:])
        if self.sn is not None:
            h = self.sn(h)
        return h if self.pool is None else self.pool(h)


class StageModule(nn.Module):
    def __init__(self, stage: Stage, plan: StagePlan, make_neuron: NeuronFactory, v_threshold: float):
        super().__init__()
        make_norm = norm_factory(stage.norm, v_threshold)
        build = BLOCK_BUILDERS[stage.kind]
        self.blocks = nn.ModuleList(
            build(BlockContext(bp.in_channels, bp.mid_channels, bp.out_channels, bp.stride, bp.projection,
                               stage.branch, stage.interblock, make_neuron, make_norm))
            for bp in plan.blocks)
        self.inputs = plan.inputs
        self.is_chain = plan.is_chain
        self.transition = self._transition(stage, plan, make_neuron, make_norm)

    @staticmethod
    def _transition(stage: Stage, plan: StagePlan, make_neuron, make_norm) -> nn.Module | None:
        if stage.transition == "none":
            return None
        mods = OrderedDict(bn=make_norm(plan.pre_transition_channels, False), sn=make_neuron(),
                           conv=layer.Conv2d(plan.pre_transition_channels, plan.out_channels, kernel_size=1,
                                             bias=False, step_mode="m"))
        if stage.transition == "pool":
            mods["pool"] = layer.AvgPool2d(kernel_size=2, stride=2, step_mode="m")
        return nn.Sequential(mods)

    @staticmethod
    def _gather(node_input, outputs: dict, branches: dict) -> torch.Tensor:
        parts = []
        if node_input.add:
            terms = [branches[s] if branch_only else outputs[s] for s, branch_only in node_input.add]
            total = terms[0]
            for t in terms[1:]:
                total = total + t
            parts.append(total)
        parts += [outputs[s] for s in node_input.concat]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-3)  # channels, in [T,]N,C,H,W

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_chain:
            for block in self.blocks:
                x = block(x)[0]
        else:
            outputs, branches = {INPUT: x}, {}
            for k, block in enumerate(self.blocks):
                outputs[k], branches[k] = block(self._gather(self.inputs[k], outputs, branches))
            x = self._gather(self.inputs[-1], outputs, branches)
        return x if self.transition is None else self.transition(x)


class Head(nn.Module):
    def __init__(self, channels: int, num_classes: int, preact: bool, make_neuron: NeuronFactory):
        super().__init__()
        self.bn = layer.BatchNorm2d(channels, step_mode="m") if preact else None
        self.sn = make_neuron() if preact else None
        self.pool = layer.AdaptiveAvgPool2d((1, 1), step_mode="m")
        self.fc = layer.Linear(channels, num_classes, step_mode="m")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.bn is not None:
            h = self.sn(self.bn(h))
        return self.fc(self.pool(h).flatten(-3))


def scale_widths(g: Genotype, width_mult: float) -> Genotype:
    """The genotype with stem and stage widths scaled (proxies); at least 1 channel each."""
    if width_mult == 1.0:
        return g
    scale = lambda w: max(1, int(round(w * width_mult)))  # noqa: E731
    return g.replace(stem_width=scale(g.stem_width),
                     stages=tuple(replace(s, width=scale(s.width)) for s in g.stages))


class SpikingNet(nn.Module):
    """[N, C, H, W] images -> [N, classes] logits, the mean over T of the head's output.

    Neuron state is reset at the start of every call, so callers never reset it.
    """

    def __init__(self, genotype: Genotype, num_classes: int, in_channels: int, timesteps: int,
                 width_mult: float = 1.0):
        super().__init__()
        self.genotype, self.num_classes, self.in_channels = genotype, num_classes, in_channels
        self.width_mult = width_mult
        self.timesteps = timesteps
        g = scale_widths(genotype, width_mult)
        make_neuron = neuron_factory(g.neuron)
        self.stem = Stem(g.stem, in_channels, g.stem_width, stem_ends_in_sn(g.stages[0]), make_neuron)
        plans = g.plans()
        self.stages = nn.ModuleList(StageModule(s, p, make_neuron, g.neuron.v_threshold)
                                    for s, p in zip(g.stages, plans))
        self.stage_channels = [p.out_channels for p in plans]
        self.head = Head(plans[-1].out_channels, num_classes, g.stages[-1].kind in choices.HEAD_PREACT_KINDS,
                         make_neuron)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._label_neurons()

    @property
    def timesteps(self) -> int:
        return self._timesteps

    @timesteps.setter
    def timesteps(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"timesteps must be a positive integer, got {value!r}")
        self._timesteps = value

    def _label_neurons(self) -> None:
        for name, m in self.named_modules():
            if isinstance(m, neuron.BaseNode):
                parts = name.split(".")
                stage = int(parts[1]) if parts[0] == "stages" else None
                block = int(parts[3]) if parts[0] == "stages" and parts[2] == "blocks" else None
                position = ".".join(parts[4:]) if block is not None else ".".join(p for p in parts if not p.isdigit())
                m.snnas_stage, m.snnas_block, m.snnas_position = stage, block, position

    def build_kwargs(self) -> dict[str, Any]:
        return dict(num_classes=self.num_classes, in_channels=self.in_channels, timesteps=self.timesteps,
                    width_mult=self.width_mult)

    def forward(self, x: torch.Tensor, return_stages: bool = False):
        if x.dim() != 4:
            raise ValueError(f"expected images [N, C, H, W], got shape {tuple(x.shape)}")
        functional.reset_net(self)
        h = self.stem(x, self.timesteps)
        stage_outputs = []
        for stage in self.stages:
            h = stage(h)
            stage_outputs.append(h)
        logits = self.head(h).mean(0)
        return (logits, stage_outputs) if return_stages else logits
