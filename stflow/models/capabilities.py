"""What an estimator can do beyond fit / predict / save / load, declared by its class.

Training, the search and predict-slide read these declarations; they never probe for a
method or a keyword. Every registry estimator subclasses :class:`Capabilities` and says
which it has (the registry refuses a class that does not; tests/test_models.py checks that
each declaration matches the methods). Standard library only.
"""

from __future__ import annotations

from typing import ClassVar

CAPABILITIES = ("reports_epochs", "fits_on_validation", "refits", "draws")


class Capabilities:
    """The optional abilities of an estimator, all off here; a class switches on its own."""

    reports_epochs: ClassVar[bool] = False
    """``fit(train, val, on_epoch=...)`` passes each epoch's history row to ``on_epoch`` as
    the epoch ends (a progress file follows it, a search prunes through it)."""

    fits_on_validation: bool = False
    """It selects nothing and fits on the validation spots too: its calibration is then made
    by a twin fitted without them (may be a property of the instance's settings)."""

    refits: ClassVar[bool] = False
    """``refit_params(history)`` gives the settings that retrain the validated choice on
    train + validation (``refit: true``)."""

    draws: ClassVar[bool] = False
    """Its prediction is the mean of random draws: ``distinct_draws(n)`` says how many of
    ``n`` can differ, ``draw_moments(slide, n, ...)`` gives their mean and spread."""
