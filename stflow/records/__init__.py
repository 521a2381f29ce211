"""Records that both cross-validation and deployment write, owned by neither package.

A fold model and the final model write the same deployment record, so it lives below
``stflow.crossval`` and ``stflow.deploy`` and dependencies keep flowing one way.
"""
