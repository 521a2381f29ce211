"""Cross-validation stages: train a model on one fold, predict its test samples."""
