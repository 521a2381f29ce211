"""The one way a model is trained and written, for a fold and for the deployable model alike:
search on validation, refit when asked, calibrate intervals on spots the model never trained
on, and write the folder atomically with what was chosen."""
