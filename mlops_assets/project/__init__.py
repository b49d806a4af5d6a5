"""Model projects: the spec a team writes (project.toml) and the code it owns (model.py).

Import-light (standard library, pydantic, numpy, scikit-learn): the standalone trainer, the
scoring service and the code location all read a project through it.
"""
