"""Drop-in replacements for the Python layers that caffe-xent's users wrote before.

:mod:`caffe_xent.compat.loss_layers` replaces the original ``loss_layers.py``
(``CustomSigmoidCrossEntropyLossLayer``). A prototxt names a Python layer by
its top-level module (``module: 'loss_layers'``), so caffe-xent installs
this file a second time as the top-level module ``loss_layers``: old
prototxts run unchanged. Remove (or rename) your own ``loss_layers.py``: the
current directory comes first on the path of ``python`` and of the ``caffe``
command, so an old copy there would still win. See
docs/migrating_from_python_layers.md.
"""
