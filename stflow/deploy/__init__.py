"""Apply a trained model to new H&E slides: ``stflow predict-slide SLIDE... --model-dir DIR --out DIR``.

Virtual spots over the detected tissue (the training pitch and lattice), patches with the
training window, features from the model's own encoder, a kNN graph and several flow samples:
their mean is the prediction (``X``) of ``{out}/{name}.h5ad``, which ``sc.pl.spatial`` draws
over the H&E, with intervals calibrated on the model's validation spots
(``layers["lower"]``/``["upper"]``), a flag for spots unlike the training spots
(``obs["shifted"]``) and the samples' uncalibrated spread (``layers["sample_std"]``);
PNG maps of chosen genes (mean and interval width) go to ``{out}/{name}_maps/``.
"""

from __future__ import annotations
