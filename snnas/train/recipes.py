"""Named training recipes: the search's short proxy and the paper's published schedules.

The paper's numbers (DANet, Sec. V-A) live here and nowhere else: SGD momentum 0.9, lr
0.1 / 0.02 per 256 images and weight decay 1e-4 / 1e-5 for T=1 / T=4, AutoAugment and label
smoothing, mixed precision and sync-BN on GPUs.
"""
from __future__ import annotations

from snnas.train.config import TrainConfig, TrainConfigError

_RECIPES: dict[str, TrainConfig] = {}


def register_recipe(name: str, config: TrainConfig) -> None:
    """Add a recipe; a name registers once, so two modules can never silently disagree on it."""
    if not isinstance(name, str) or not name:
        raise TrainConfigError(f"recipe name {name!r} is not allowed; expected a non-empty string")
    if name in _RECIPES:
        raise TrainConfigError(f"recipe {name!r} is already registered")
    if not isinstance(config, TrainConfig):
        raise TrainConfigError(f"recipe {name!r}: expected a TrainConfig, got {type(config).__name__}")
    _RECIPES[name] = config


def get_recipe(name: str) -> TrainConfig:
    try:
        return _RECIPES[name]
    except (KeyError, TypeError):
        raise TrainConfigError(f"unknown recipe {name!r}; known: {', '.join(list_recipes())}") from None


def list_recipes() -> list[str]:
    return sorted(_RECIPES)


# The T=4 fine-tuning phase of the paper (Sec. V-A): 45 epochs from the T=1 weights, 10 of
# warm-up, lr / 10 at epochs 30 and 40, lr 0.02 per 256 and weight decay 1e-5.
_PAPER_FINETUNE = TrainConfig(
    epochs=45, batch_size=256, lr_per_256=0.02, weight_decay=1e-5, warmup_epochs=10,
    schedule="step", milestones=(30, 40), label_smoothing=0.1, augment="autoaugment")

# ImageNet-1k, state-of-the-art comparison: 120 epochs at T=1, 15 of warm-up, lr / 10 at 60/105/115.
register_recipe("paper-imagenet", TrainConfig(
    epochs=120, batch_size=256, lr_per_256=0.1, weight_decay=1e-4, warmup_epochs=15,
    schedule="step", milestones=(60, 105, 115), label_smoothing=0.1, augment="autoaugment",
    timesteps=1, finetune=_PAPER_FINETUNE))

# ImageNet-1k ablations: 50 epochs, 5 of warm-up, lr / 10 at 30/40/45.
register_recipe("paper-ablation", TrainConfig(
    epochs=50, batch_size=256, lr_per_256=0.1, weight_decay=1e-4, warmup_epochs=5,
    schedule="step", milestones=(30, 40, 45), label_smoothing=0.1, augment="autoaugment",
    timesteps=1, finetune=_PAPER_FINETUNE))

# ImageNet-5 / ImageNet-20: T=4 throughout, 100 epochs, 5 of warm-up, cosine decay.
register_recipe("paper-subset", TrainConfig(
    epochs=100, batch_size=64, lr_per_256=0.1, weight_decay=1e-4, warmup_epochs=5,
    schedule="cosine", label_smoothing=0.1, augment="autoaugment", timesteps=4))

# Retraining for a few epochs on small images (retrain's default). In a run this short, padded-crop
# augmentation only slows convergence and 0.1 per 256 at batch 64 (0.025) leaves SGD undertrained:
# on Fashion-MNIST, DANet-A ResNet-18 at width 1/4 gains several points of test accuracy in 5 epochs
# from no augmentation and 0.4 per 256 (0.1 at batch 64, the usual CIFAR lr).
_SHORT = TrainConfig(
    epochs=5, batch_size=64, lr_per_256=0.4, weight_decay=1e-4, warmup_epochs=1,
    schedule="cosine", label_smoothing=0.1, augment="none",
    finetune=TrainConfig(epochs=5, batch_size=64, lr_per_256=0.08, weight_decay=1e-5, warmup_epochs=1,
                         schedule="cosine", label_smoothing=0.1, augment="none"))
register_recipe("short", _SHORT)

# The search's default proxy (phases 1 and 2): `short` at twice its lr. Chosen by
# bench/proxy_fidelity.py against the ground-truth table: on 600 Fashion-MNIST images a class and 3
# epochs it ranks the table's 18 networks with Kendall tau 0.86 (`short`: 0.82, `proxy`: 0.67), puts
# its top 3 in the table's top 3, and leaves no network that learns in full training at chance.
register_recipe("sprint", _SHORT.replace(lr_per_256=0.8))

# The search's earlier proxy: a few epochs, one of linear warm-up, cosine to zero, light augmentation.
# Its fine-tuning phase borrows the paper's T=4 lr and weight decay.
register_recipe("proxy", TrainConfig(
    epochs=5, batch_size=64, lr_per_256=0.1, weight_decay=1e-4, warmup_epochs=1,
    schedule="cosine", label_smoothing=0.1, augment="crop_flip",
    finetune=TrainConfig(epochs=5, batch_size=64, lr_per_256=0.02, weight_decay=1e-5, warmup_epochs=1,
                         schedule="cosine", label_smoothing=0.1, augment="crop_flip")))
