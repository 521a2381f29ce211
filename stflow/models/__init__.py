"""Models: the registry (name -> estimator), the hyper-parameter search, the STFlow family
and the spot-based baselines."""
