"""The model library: what a row is and how a released model answers. No Dagster, no HTTP.

It ships to the scoring image, to ``score.py`` in Azure ML's own server and to the AML batch job.
``rows`` is the row contract (rows by position or by name -> the typed matrix or frame the model
takes, with the reasons a row is refused or flagged; each value judged by ``project/rules.py``):
change what a request may hold there. ``manifest`` finds and reads a release's manifest,
``artifact`` verifies and loads the artifact (sha256, skops), ``predictors`` reads a faster equal
predictor off a fitted model (one that beats the compiled graph), ``compiling`` compiles a
fitted model to an ONNX graph checked row by row (in the project runner), ``compiled`` verifies
and runs that graph, ``loaded`` is a released model loaded and how it answers, ``smoke`` the rows every deployment of
a version must answer as the model did.
"""
