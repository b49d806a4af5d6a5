"""Matplotlib figures as markdown images (data URIs): how plots reach the Dagster UI's metadata."""

import base64
import io

from mlops_assets.core.markdown import escape


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display here), imported only when a plot is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def as_markdown(figure, title: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot().close(figure)
    return f"![{escape(title)}](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()})"
