"""STFlow: settings, priors, denoiser networks, flow matching, trainer and the estimator
the registry builds."""
