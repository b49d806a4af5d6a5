"""The project runner: the one process a model project's code and fitted models run in."""
