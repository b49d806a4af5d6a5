"""The names inside a scoring image's build context.

The contract between ``release/build_context.py``, which assembles a context from a registered
version, and the runtimes here, which install it into a venv or run the image built from it.
"""

REQUIREMENTS = "requirements.txt"  # the locked `serving` group
AZURE_REQUIREMENTS = "requirements-azure.txt"  # `serving` + `serving-azure`, or empty: its own layer
PROJECT_DIR = "project"  # the package, installed with --no-deps
MODEL_DIR = "model"  # artifact + manifest
PROJECT_REQUIREMENTS = "project-requirements"  # a project's own packages: its lock, index or wheels
PROJECT_LOCK = f"{PROJECT_REQUIREMENTS}/requirements.lock"
PROJECT_INDEX = f"{PROJECT_REQUIREMENTS}/index-url"  # the index its packages come from, or
PROJECT_WHEELS = f"{PROJECT_REQUIREMENTS}/wheels"  # the wheels themselves (a folder index)
PROJECT_DEBIAN_PACKAGES = f"{PROJECT_REQUIREMENTS}/debian-packages"  # its [environment] system_packages
# The project's serving spec inside the packaged code (model/rows.py SPEC_NAME): its "serving"
# block sizes each service (hosting/sizing.py).
SERVING_SPEC = f"{PROJECT_DIR}/mlops_assets/model/serving-spec.json"
