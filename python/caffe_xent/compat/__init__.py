"""Drop-in replacements for the Python layers that caffe-xent's users wrote before.

:mod:`caffe_xent.compat.loss_layers` replaces the seeds' ``loss_layers.py``
(``CustomSigmoidCrossEntropyLossLayer``). A prototxt names a Python layer by
its top-level module (``module: 'loss_layers'``), so put this folder on
``PYTHONPATH``::

    export PYTHONPATH="$(python -c 'import caffe_xent.compat, os; print(os.path.dirname(caffe_xent.compat.__file__))')${PYTHONPATH:+:$PYTHONPATH}"

and remove (or rename) your own ``loss_layers.py``: the folder of the
prototxt and the current directory come first on the path of the ``caffe``
command, so an old copy there would still win. See
docs/migrating_from_python_layers.md.
"""
