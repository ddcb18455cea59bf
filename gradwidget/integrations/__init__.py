"""Callbacks for the trainers people use: PyTorch Lightning and Hugging Face ``transformers``.

Import the one you need; each imports its framework, and says which extra to install when it
is missing:

* ``from gradwidget.integrations.lightning import GradWidgetCallback`` (``gradwidget[lightning]``)
* ``from gradwidget.integrations.transformers import GradWidgetCallback``
  (``gradwidget[transformers]``)
"""
