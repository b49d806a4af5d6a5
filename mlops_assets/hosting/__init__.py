"""The Dagster-free local host: what runs a release's service on 127.0.0.1 and keeps it running.

``listener`` (the listening socket, handed from holder to holder), ``supervisor`` (owns the socket,
runs the service on it, restarts it), ``runtimes`` (the service as a process from the build
context's venv or as a container of the tested image), ``engines`` (podman or docker),
``state`` (deployment records on disk), ``processes`` (start, swap, hand over, stop),
``takeover`` (a new supervisor commits itself), ``liveness`` (the supervisor's probe), ``keeper``
(production back after its supervisor died), ``image_holds`` (a home's hold on scoring images),
``health`` (what a deployed service answers). ``mlops-assets deployments`` and ``down`` use it
without importing Dagster; ``release/`` orchestrates it. Add a local runtime in ``runtimes``.
"""
