"""Calibrated per-spot, per-gene intervals and the shift flag: what a user may trust.

``conformal`` holds the split-conformal arithmetic, ``shift`` the distance of a spot's
features from the training spots', and ``calibration`` how a trained model is calibrated on
spots it never trained on, saved beside it and applied to new predictions.
"""
