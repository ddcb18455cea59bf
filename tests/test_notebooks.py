"""Every notebook runs top to bottom without an error, small (``GW_STEPS``), in this venv's kernel.

Also: the committed notebooks carry no outputs, and the key sentences a reader relies on appear
in the executed output (the diagnosis names the failure each notebook is about).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
STEPS = "120"  # enough recorded samples for every diagnosis rule to judge
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# What a reader of each notebook must see in its printed output (stdout and results).
EXPECTED_TEXT = {
    "01_vanishing_gradients": [
        "WARNING: vanishing in layers 0, 2",
        "ReLU + He init",
        "BatchNorm",
        "(1): ReLU()",  # the fixed model really has ReLU
    ],
    "02_your_own_training_loop": ["test accuracy:", "images: (1347, 1, 8, 8)"],
    "03_exploding_and_dead_units": [
        "CRITICAL exploding",
        "WARNING dead_units",
        "Training diverged",
        "RunState.DIVERGED",
    ],
    "04_lightning_and_transformers": [
        "WARNING: vanishing in layers net.0",  # through the Lightning callback
        "no vanishing gradients",  # the fixed copy from callback.panel.remedied_model
        f"{STEPS} steps recorded",  # the Hugging Face callback: every step's loss
        f"Finished {STEPS} steps",  # a BERT trained by the panel itself
    ],
    "05_residual_connections": [
        "x + f(x) around 19 Linear+Sigmoid blocks",
        "WARNING vanishing: fixes to try: Residual",
        "40-layer tanh MLP",
        "residual accuracy",
        "class Residual(nn.Sequential)",
    ],
    "06_follow_a_job": ["ddp: finished at step", "fsdp: finished at step", "['vanishing'"],
    "07_find_a_fix": [
        "vanishing gradients",  # each verdict names what its winner cleared ...
        "NaN / Inf values gone; test accuracy diverged ->",
        "dead ReLU units",
        "test accuracy 10 % ->",  # ... and the accuracy before and after
        "first/last gradient",  # the evidence table
    ],
}


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


@pytest.fixture(scope="module", params=NOTEBOOKS, ids=_ids(NOTEBOOKS))
def executed(request: pytest.FixtureRequest) -> tuple[str, nbformat.NotebookNode]:
    """The notebook run by nbclient in a fresh kernel; a cell error fails every test of it."""
    path: Path = request.param
    notebook = nbformat.read(path, as_version=4)
    with pytest.MonkeyPatch.context() as env:
        # The kernel inherits this environment: small runs, one torch thread.
        env.setenv("GW_STEPS", STEPS)
        env.setenv("OMP_NUM_THREADS", "1")
        client = NotebookClient(
            notebook,
            timeout=120,
            kernel_name="python3",
            store_widget_state=True,
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute()
    return path.stem, notebook


def _text(notebook: nbformat.NotebookNode) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def _dom_classes(notebook: nbformat.NotebookNode) -> set[str]:
    models = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    return {css for model in models.values() for css in model["state"].get("_dom_classes", [])}


def test_notebook_prints_what_the_reader_needs(executed):
    name, notebook = executed
    text = _text(notebook)
    missing = [expected for expected in EXPECTED_TEXT[name] if expected not in text]
    assert missing == [], f"{name} did not print {missing}"


def test_notebook_panel_drew_its_charts(executed):
    # The gradient chart exists only once the panel has drawn a recorded step.
    _, notebook = executed
    assert {"gw-panel", "gw-grad-chart", "gw-diagnosis"} <= _dom_classes(notebook)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_notebook_has_no_outputs_and_reads_gw_steps(path: Path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert "widgets" not in notebook.metadata
    assert any('os.environ.get("GW_STEPS"' in cell.source for cell in code)
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_every_notebook_has_expectations():
    assert len(NOTEBOOKS) >= 3
    assert set(_ids(NOTEBOOKS)) == set(EXPECTED_TEXT)
