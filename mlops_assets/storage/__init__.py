"""Files under one fsspec root (a local folder or ``az://``) and what is removed from text before
it is shown. The lowest room: no Dagster, no pandas; the scoring service writes its request log
through ``fsstore``."""
