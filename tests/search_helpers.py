"""A tiny ResNet-18 space for search tests: a few blocks, chain or dense addition, one seed."""
from __future__ import annotations


def tiny_space(blocks: tuple[str, ...], per_stage: bool = False) -> str:
    choices = ", ".join(f'"{b}"' for b in blocks)
    return f"""
name = "tiny"
builder = "resnet_stages"
[fixed]
stem = "small"
[genes]
depth = ["18"]
block = [{choices}]
connect = ["chain", "dense_add"]
{'per_stage = ["block"]' if per_stage else ''}
[seeds]
presets = ["danet_a_resnet18"]
"""
