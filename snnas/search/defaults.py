"""The search's default fidelities, in one place for the command line and the API.

Measured, not assumed: ``bench/proxy_fidelity.py`` trained every network of the ground-truth table
(``bench/groundtruth.py``: the 18 uniform networks of ``dense_additive``, fully trained on
Fashion-MNIST) under twelve proxy settings at two seeds. At about 10 s a ResNet-18 trial here, 600
images a class of all ten classes for 3 epochs with the ``sprint`` recipe ranks the table with
Kendall tau 0.86 (the table's own seed-to-seed tau is 0.85), puts the table's top 3 in its top 3 and
leaves none of the networks that learn in full training at chance; five classes, crops or the old
``proxy`` recipe rank worse at the same cost. Phase 2, at four times the images, lands within about
a point of the table's full-training accuracy for the networks a search promotes.
"""
from __future__ import annotations

DATA = "fashion-10"
RECIPE = "sprint"
EPOCHS = 3
TRAIN_PER_CLASS = 600
VAL_PER_CLASS = 100
EPOCHS2 = 3
TRAIN_PER_CLASS2 = 2400
