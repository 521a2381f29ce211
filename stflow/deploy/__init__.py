"""Apply a trained model to new H&E slides: ``stflow predict-slide SLIDE... --model DIR --out DIR``.

Virtual spots over the detected tissue (the training pitch and lattice), patches with the
training window, features from the model's own encoder, a kNN graph and several flow samples:
their mean is the prediction (``X``), their standard deviation the uncertainty
(``layers["std"]``) of ``{out}/{name}.h5ad``, which ``sc.pl.spatial`` draws over the H&E;
PNG maps of chosen genes go to ``{out}/{name}_maps/``.
"""

from __future__ import annotations
