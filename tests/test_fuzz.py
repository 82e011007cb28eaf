"""Property-based fuzzing of the loss layers (Hypothesis).

Properties, each for SigmoidCrossEntropyLoss, MultiLabelSoftmaxLoss,
ZLPRLoss and TwoWayLoss:

1. Valid input of any shape -- empty (a dimension of 0), 1-D to 5-D, long
   class axes -- with any axis (negative too), every option, float32 and
   float64 and every normalization: loss, element losses and gradient agree
   with the float64 references (tests/*_reference.py) within the tolerances
   the other suites derive from the math; an empty blob gives loss 0 and an
   empty gradient. CPU, and GPU where one is present.
2. A valid case of 1. with one NaN or infinite target or per-element
   weight placed anywhere: refused, naming the bottom and the flat index.
3. Malformed input -- shapes, dtypes, non-finite and out-of-range values,
   bad options, blob counts, shapes too large for a blob -- thrown at
   caffe_xent.run_layer and at a pycaffe Net: every case the layer contract
   calls bad input gives LayerError (ValueError from pycaffe) naming the
   layer; every other case gives a defined value.

Everything runs in a child process (fuzz_worker.py), so an abort fails the
example that caused it instead of killing pytest.

The default profile keeps this file under a minute; a longer run:

    pytest tests/test_fuzz.py --hypothesis-profile=xent-nightly

and a run is replayed with --hypothesis-seed=N (the seed is printed on a
failure).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st

import caffe_xent
import fuzz_worker
from conftest import DEVICES, requires_gpu
from sigmoid_cross_entropy_loss_reference import layer_text as sigmoid_cross_entropy_loss_text
from sigmoid_cross_entropy_loss_reference import reference as sigmoid_cross_entropy_loss_reference
from test_multi_label_softmax_loss import assert_matches_reference, prototxt as multi_label_softmax_loss_text
from test_asymmetric_loss import margin_slack
from test_sigmoid_cross_entropy_loss import LOSS_RTOL, check_close, proto_floats
from test_two_way_loss import check_results as two_way_loss_check_results
from test_zlpr_loss import check_results as zlpr_loss_check_results
from two_way_loss_reference import layer_text as two_way_loss_text
from zlpr_loss_reference import layer_text as zlpr_loss_text

SIGMOID_CROSS_ENTROPY_LOSS, MULTI_LABEL_SOFTMAX_LOSS = "SigmoidCrossEntropyLoss", "MultiLabelSoftmaxLoss"
ZLPR_LOSS, TWO_WAY_LOSS = "ZLPRLoss", "TwoWayLoss"
HARD_TARGET_LOSSES = (ZLPR_LOSS, TWO_WAY_LOSS)  # targets 0, 1 or ignore_label only
LAYER_NAMES = {SIGMOID_CROSS_ENTROPY_LOSS: "xent", MULTI_LABEL_SOFTMAX_LOSS: "mlsoftmax",
               ZLPR_LOSS: "zlpr", TWO_WAY_LOSS: "twoway"}
NORMALIZATIONS = ("FULL", "VALID", "BATCH_SIZE", "NONE")
# Elements per drawn blob: enough for long class axes and the SIMD tiles of
# spatial maps, small enough for hundreds of examples a second.
MAX_ELEMENTS = 6000


# ---- the child process ---------------------------------------------------------

class Child:
    """fuzz_worker.py in a child process, restarted after it dies."""

    def __init__(self):
        self.proc = None
        self.stderr = None

    def start(self):
        self.stderr = tempfile.TemporaryFile()
        env = dict(os.environ, GLOG_minloglevel="2")  # no Net logging per example
        self.proc = subprocess.Popen([sys.executable, fuzz_worker.__file__], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, env=env)

    def call(self, kind, payload):
        """("ok", result) or ("raised", class name, message), or
        ("died", exit status, last stderr) where the child did not answer."""
        if self.proc is None:
            self.start()
        try:
            fuzz_worker.write_message(self.proc.stdin, (kind, payload))
            answer = fuzz_worker.read_message(self.proc.stdout)
        except (BrokenPipeError, EOFError):
            answer = None
        if answer is None:
            status = self.proc.wait()
            self.stderr.seek(0)
            tail = self.stderr.read()[-3000:].decode(errors="replace")
            self.proc = None
            return ("died", status, tail)
        return answer

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            self.proc = None


@pytest.fixture(scope="module")
def child():
    worker = Child()
    yield worker
    worker.close()


def answer_of(child, kind, payload, in_example=True):
    answer = child.call(kind, payload)
    if in_example:
        note("answer: %r" % (answer[:2] if answer[0] == "ok" else answer,))
    assert answer[0] != "died", "the process died (exit status %s); its stderr ends:\n%s" % answer[1:]
    return answer


# ---- strategies ----------------------------------------------------------------

@st.composite
def shapes(draw, min_axes=1, max_axes=5, max_elements=MAX_ELEMENTS):
    """A shape and a class axis (negative half of the time): small
    dimensions, 0 among them, and now and then a long class axis."""
    axes = draw(st.integers(min_axes, max_axes))
    dims = draw(st.lists(st.sampled_from([0, 1, 1, 2, 2, 3, 4, 5, 7]), min_size=axes,
                         max_size=axes))
    axis = draw(st.integers(-axes, axes - 1)) if axes else 0
    if axes and draw(st.integers(0, 3)) == 0:
        dims[axis] = draw(st.sampled_from([8, 15, 16, 17, 31, 33, 64, 257, 1000, 3000]))
    count = int(np.prod(dims))
    for i in range(axes):  # keep the blob small: shrink the other axes
        if count > max_elements and i != axis % axes and dims[i] > 1:
            dims[i] = 1
            count = int(np.prod(dims))
    assume(count <= max_elements)
    return tuple(dims), axis


rng_states = st.integers(0, 2**32 - 1)  # numpy Generator states
# Per-class weights: 0 or in [2^-10, 3] where results are compared with
# the references. A weight near the bottom of the float32 range gives losses
# that are subnormal, which float32 holds to an absolute step only, not to
# the relative tolerances used there. The malformed-input property draws any
# float32 in [0, 3] (it asks for a defined value).
float32_values = st.one_of(st.just(0.0), st.floats(2.0**-10, 3.0, width=32))
any_float32_values = st.floats(0.0, 3.0, width=32)


@st.composite
def sigmoid_cross_entropy_loss_cases(draw):
    """(layer text, bottoms, reference options) of a valid layer."""
    shape, axis = draw(shapes())
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(rng_states))
    explicit_axis = len(shape) < 2 or draw(st.booleans())
    if not explicit_axis:
        axis = 1  # the default with 2 or more axes
    classes = shape[axis]
    per_class = {}
    for field in ("pos_weight", "class_weight"):
        size = draw(st.sampled_from([0, 1, max(classes, 1)]))
        per_class[field] = [float(v) for v in draw(st.lists(float32_values, min_size=size,
                                                           max_size=size))]
    options = dict(
        axis=axis if explicit_axis else None,
        focal_gamma=draw(st.sampled_from([None, 0.0, 0.5, 1.0, 2.0, 3.0])),
        focal_alpha=draw(st.sampled_from([None, -1.0, 0.0, 0.25, 1.0])),
        label_smoothing=draw(st.sampled_from([None, 0.0, 0.1, 0.3])),
        # The asymmetric form (ASL) now and then: γ- and the probability margin.
        focal_gamma_neg=draw(st.sampled_from([None, None, 0.0, 1.5, 4.0])),
        focal_margin=draw(st.sampled_from([None, None, 0.0, 0.05, 0.3])),
        ignore_label=draw(st.sampled_from([None, -1])),
        normalization=draw(st.sampled_from([None, *NORMALIZATIONS])), **per_class)
    scale = draw(st.sampled_from([0.1, 3.0, 30.0]))
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    t = rng.uniform(0, 1, shape)
    t[rng.uniform(size=shape) < 0.3] = 1.0
    t[rng.uniform(size=shape) < 0.2] = 0.0
    if options["ignore_label"] is not None:
        t[rng.uniform(size=shape) < 0.2] = -1
    bottoms = [x, t.astype(dtype)]
    if draw(st.booleans()):
        bottoms.append(rng.uniform(0, 2, shape).astype(dtype))
    ref = {k: v for k, v in options.items() if v is not None}
    ref = proto_floats(ref)
    ref["axis"] = axis
    ref["normalization"] = options["normalization"] or "BATCH_SIZE"
    given = {k: v for k, v in options.items() if v is not None}
    return sigmoid_cross_entropy_loss_text(tops=2, **given), bottoms, ref


@st.composite
def multi_label_softmax_loss_cases(draw):
    """(options, x, t) of a valid layer."""
    shape, axis = draw(shapes())
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(rng_states))
    classes = shape[axis]
    size = draw(st.sampled_from([0, 1, max(classes, 1)]))
    options = dict(axis=axis,
                   target_normalization=draw(st.sampled_from(["COUNT", "SUM", "NONE"])),
                   label_smoothing=draw(st.sampled_from([0.0, 0.1, 0.3])),
                   normalization=draw(st.sampled_from(NORMALIZATIONS)))
    if size:
        options["class_weight"] = [float(v) for v in draw(st.lists(float32_values, min_size=size,
                                                                  max_size=size))]
    if draw(st.booleans()):
        options["ignore_label"] = -1
    # Scores of scale 40 in float32 only: the reference's p = exp(x - lse) is
    # off by about |x - lse| eps64 relative, past the float64 tolerance there.
    scales = [0.1, 4.0, 40.0] if dtype == np.float32 else [0.1, 4.0]
    x = (rng.standard_normal(shape) * draw(st.sampled_from(scales))).astype(dtype)
    kind = draw(st.sampled_from(["multi-hot", "soft", "counts"]))
    if kind == "multi-hot":
        t = (rng.random(shape) < 0.3).astype(np.float64)
    elif kind == "soft":
        t = rng.random(shape) * (rng.random(shape) < 0.5)
    else:
        t = rng.integers(0, 4, shape).astype(np.float64)
    if "ignore_label" in options:
        t[rng.random(shape) < 0.05] = -1
    return options, x, t.astype(dtype)


@st.composite
def zlpr_loss_cases(draw):
    """(options, x, t) of a valid ZLPRLoss layer: 0/1 targets (rows without
    positives or negatives among them), ignore_label now and then."""
    shape, axis = draw(shapes())
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(rng_states))
    options = dict(axis=axis, normalization=draw(st.sampled_from(NORMALIZATIONS)))
    if draw(st.booleans()):
        options["ignore_label"] = draw(st.sampled_from([-1, 255]))
    x = (rng.standard_normal(shape) * draw(st.sampled_from([0.1, 4.0, 40.0]))).astype(dtype)
    t = (rng.random(shape) < draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))).astype(np.float64)
    if "ignore_label" in options:
        t[rng.random(shape) < 0.1] = options["ignore_label"]
    return options, x, t.astype(dtype)


@st.composite
def two_way_loss_cases(draw):
    """(options, x, t) of a valid TwoWayLoss layer: as zlpr_loss_cases, and
    temperatures drawn now and then."""
    options, x, t = draw(zlpr_loss_cases())
    for name in ("positive_temperature", "negative_temperature"):
        if draw(st.booleans()):
            options[name] = draw(st.sampled_from([0.25, 1.0, 4.0]))
    return options, x, t


# ---- property 1: valid input matches the float64 references -------------------

@pytest.mark.parametrize("device", DEVICES)
@given(case=sigmoid_cross_entropy_loss_cases())
def test_sigmoid_cross_entropy_loss_matches_reference(child, device, case):
    text, bottoms, ref = case
    note("%s, shapes %s, dtype %s" % (text, [b.shape for b in bottoms], bottoms[0].dtype))
    answer = answer_of(child, "run_layer", (text, bottoms, device, {}))
    assert answer[0] == "ok", answer
    tops, diffs = answer[1]
    dtype = bottoms[0].dtype.type
    loss, element, grad, larger = sigmoid_cross_entropy_loss_reference(*bottoms, **ref, terms=True)
    assert tops[0].shape == () and tops[1].shape == bottoms[0].shape
    assert diffs[0].shape == bottoms[0].shape
    if bottoms[0].size == 0:
        assert float(tops[0]) == 0.0  # documented: an empty blob gives loss 0
    # A value below the dtype's normal range (a focal term of e^-50 times a
    # loss of e^-50, say) is held to a few subnormal steps, not relative.
    floor = 4 * float(np.finfo(dtype).smallest_subnormal)
    assert float(tops[0]) == pytest.approx(loss, rel=LOSS_RTOL[dtype], abs=floor)
    # Float32: where the gradient's two terms cancel, a few ulp of the larger
    # (docs/sigmoid_cross_entropy_loss.md, "Accuracy of the gradient").
    cancel = 4 * float(np.finfo(np.float32).eps) * larger if dtype == np.float32 else 0.0
    # With a margin, the asymmetric form's bound where p_m <= 1/2
    # (tests/test_asymmetric_loss.py, margin_slack).
    slack_element, slack_grad = margin_slack(bottoms, ref, dtype)
    check_close(tops[1], element, dtype, "element loss", extra=floor + slack_element)
    check_close(diffs[0], grad, dtype, "gradient",
                extra=floor + cancel + slack_grad + smoothing_tau_error(bottoms, ref))


def smoothing_tau_error(bottoms, ref):
    """Per element, the gradient error that the layer's rounding of
    τ = t(1-ε) + ε/2 to the blob's dtype accounts for (0 without label
    smoothing: τ = t exactly). τ = t·keep + ε/2 is taken in that dtype, with
    keep = 1-ε rounded: three roundings of values <= 1, each within u =
    eps/2, so within 3u of the exact τ. Where the gradient's two terms
    cancel (σ(x) ≈ τ) that is its whole error, so the bound is the
    reference's own change over τ ± 3u: half the difference of the gradients
    at t ± 3u / (1-ε), ignored elements left alone."""
    smoothing = ref.get("label_smoothing", 0.0)
    if not smoothing:
        return 0.0
    x, t = bottoms[0], bottoms[1].astype(np.float64)
    step = 1.5 * np.finfo(x.dtype).eps / (1 - smoothing)
    keep = t == ref["ignore_label"] if "ignore_label" in ref else np.zeros(t.shape, bool)
    up = np.where(keep, t, t + step)
    down = np.where(keep, t, t - step)
    rest = bottoms[2:]
    grad_up = sigmoid_cross_entropy_loss_reference(x, up, *rest, **ref)[2]
    grad_down = sigmoid_cross_entropy_loss_reference(x, down, *rest, **ref)[2]
    return np.abs(grad_up - grad_down) / 2


@pytest.mark.parametrize("device", DEVICES)
@given(case=multi_label_softmax_loss_cases())
def test_multi_label_softmax_loss_matches_reference(child, device, case):
    options, x, t = case
    text = multi_label_softmax_loss_text(**options)
    note("%s, shape %s, dtype %s" % (text, x.shape, x.dtype))
    answer = answer_of(child, "run_layer", (text, [x, t], device, {}))
    assert answer[0] == "ok", answer
    (loss, *_), (dx, _) = answer[1]
    assert loss.shape == () and dx.shape == x.shape
    if x.size == 0:
        # Documented: no rows (or rows of no classes) give loss 0 and an
        # empty gradient; the reference has no max of an empty row to take.
        assert float(loss) == 0.0
        return
    assert_matches_reference(options, x, t, x.dtype.type, loss, dx)


@pytest.mark.parametrize("device", DEVICES)
@given(case=zlpr_loss_cases())
def test_zlpr_loss_matches_reference(child, device, case):
    options, x, t = case
    text = zlpr_loss_text(tops=("loss", "rows"), **options)
    note("%s, shape %s, dtype %s" % (text, x.shape, x.dtype))
    answer = answer_of(child, "run_layer", (text, [x, t], device, {}))
    assert answer[0] == "ok", answer
    (loss, rows), (dx, _) = answer[1]
    assert loss.shape == () and dx.shape == x.shape
    if x.size == 0:
        assert float(loss) == 0.0 and np.all(rows == 0)  # documented: empty rows give 0
    zlpr_loss_check_results(x, t, options, loss, rows, dx)


@pytest.mark.parametrize("device", DEVICES)
@given(case=two_way_loss_cases())
def test_two_way_loss_matches_reference(child, device, case):
    options, x, t = case
    text = two_way_loss_text(**options)
    note("%s, shape %s, dtype %s" % (text, x.shape, x.dtype))
    answer = answer_of(child, "run_layer", (text, [x, t], device, {}))
    assert answer[0] == "ok", answer
    (loss,), (dx, _) = answer[1]
    if x.size == 0:
        assert float(loss) == 0.0  # documented: an empty blob gives loss 0
    two_way_loss_check_results(x, t, options, loss, dx)


# ---- property 2: one non-finite datum is refused, by index -------------------

@pytest.mark.parametrize("device", DEVICES)
@given(case=st.one_of(sigmoid_cross_entropy_loss_cases().map(
                          lambda c: (SIGMOID_CROSS_ENTROPY_LOSS, c[0], c[1])),
                      multi_label_softmax_loss_cases().map(
                          lambda c: (MULTI_LABEL_SOFTMAX_LOSS, multi_label_softmax_loss_text(**c[0]),
                                     [c[1], c[2]])),
                      zlpr_loss_cases().map(
                          lambda c: (ZLPR_LOSS, zlpr_loss_text(**c[0]), [c[1], c[2]])),
                      two_way_loss_cases().map(
                          lambda c: (TWO_WAY_LOSS, two_way_loss_text(**c[0]), [c[1], c[2]]))),
       where=st.integers(0, 2**31), value=st.sampled_from([np.nan, np.inf, -np.inf]),
       weights=st.booleans())
def test_non_finite_data_is_refused_naming_the_first(child, device, case, where, value, weights):
    """A valid case with one NaN or infinite target (or, for
    SigmoidCrossEntropyLoss with a weights bottom, weight) anywhere: refused,
    naming the bottom and the flat index, on every code path (SIMD rows and
    spatial tiles, scalar loops, CUDA)."""
    layer, text, bottoms = case
    assume(bottoms[0].size > 0)
    bottom = 2 if weights and len(bottoms) == 3 else 1
    data = [b.copy() for b in bottoms]
    index = where % data[bottom].size
    data[bottom].flat[index] = value
    note("%s, shapes %s, dtype %s, bottom[%d].flat[%d] = %r"
         % (text, [b.shape for b in data], data[0].dtype, bottom, index, value))
    answer = answer_of(child, "run_layer", (text, data, device, {}))
    assert answer[:2] == ("raised", "LayerError"), answer
    assert answer[2].startswith("%s layer '%s'" % (layer, LAYER_NAMES[layer])), answer
    assert "bottom[%d]" % bottom in answer[2] and "at flat index %d " % index in answer[2], answer


# ---- property 3: malformed input gives LayerError or a defined value ---------

def non_finite(nan_first):
    """A non-finite value. Hypothesis shrinks a failure toward the first
    value listed; the two entry points list them in opposite orders, so that
    a NaN fault and an infinity fault each stay visible in a shrunk report."""
    values = [float("nan"), float("inf"), float("-inf")]
    return st.sampled_from(values if nan_first else values[::-1])


@st.composite
def malformed_cases(draw, for_net=False):
    """A case with zero or more faults: (layer type, layer text, bottoms,
    faults). With faults the contract requires an error; without, a value.
    for_net: only what a prototxt and float32 blobs can carry."""
    def bad_number():
        return non_finite(nan_first=for_net)  # run_layer: infinities first

    layer = draw(st.sampled_from([SIGMOID_CROSS_ENTROPY_LOSS, MULTI_LABEL_SOFTMAX_LOSS, ZLPR_LOSS,
                                  TWO_WAY_LOSS]))
    shape, axis = draw(shapes(min_axes=0, max_axes=4, max_elements=400))
    rng = np.random.default_rng(draw(rng_states))
    faults = []
    ndim = len(shape)
    # The class axis: drawn in range or out of it.
    if layer == SIGMOID_CROSS_ENTROPY_LOSS:
        axis = draw(st.one_of(st.none(), st.integers(-ndim - 2, ndim + 1)))
        if axis is not None and not -ndim <= axis < ndim:
            faults.append("axis")
        classes = 1 if (axis is None and ndim < 2) or "axis" in faults else shape[
            axis if axis is not None else 1]
    else:
        axis = draw(st.integers(-ndim - 2, ndim + 1))
        if not -ndim <= axis < ndim:
            faults.append("axis")
        classes = 1 if "axis" in faults else shape[axis]

    def per_class_vector(name):
        """A per-class option vector, maybe of a wrong length or bad values."""
        size = draw(st.sampled_from([0, 1, max(classes, 1), max(classes, 1) + 1]))
        values = [float(v) for v in draw(st.lists(any_float32_values, min_size=size,
                                                  max_size=size))]
        if size not in (0, 1, max(classes, 1)):
            faults.append(name + " length")
        if values and draw(st.integers(0, 3)) == 0:
            values[draw(st.integers(0, size - 1))] = draw(
                st.one_of(bad_number(), st.just(-1.0)))
            faults.append(name + " value")
        return values

    def option(name, good, bad):
        if draw(st.integers(0, 4)) == 0:
            faults.append(name)
            return draw(st.one_of(st.sampled_from(bad), bad_number()))
        return draw(st.sampled_from(good))

    ignore = draw(st.sampled_from([None, -1, 2]))
    if layer == SIGMOID_CROSS_ENTROPY_LOSS:
        text = sigmoid_cross_entropy_loss_text(
            axis=axis, pos_weight=per_class_vector("pos_weight"),
            class_weight=per_class_vector("class_weight"),
            focal_gamma=option("focal_gamma", [None, 0.0, 2.0, 0.5], [-0.5]),
            focal_alpha=option("focal_alpha", [None, -1.0, 0.25], [1.5, -0.5]),
            label_smoothing=option("label_smoothing", [None, 0.0, 0.2], [1.0, -0.1]),
            focal_gamma_neg=option("focal_gamma_neg", [None, 4.0], [-1.0]),
            focal_margin=option("focal_margin", [None, 0.0, 0.05], [1.0, -0.1]),
            ignore_label=ignore, normalization=draw(st.sampled_from([None, *NORMALIZATIONS])),
            tops=draw(st.sampled_from([1, 2])))
    elif layer in HARD_TARGET_LOSSES:
        if ignore == 2 and draw(st.booleans()):
            ignore = draw(st.sampled_from([0, 1]))  # refused: the targets of the two sets
            faults.append("ignore_label 0 or 1")
        normalization = draw(st.sampled_from(NORMALIZATIONS))
        if layer == ZLPR_LOSS:
            text = zlpr_loss_text(axis=axis, ignore_label=ignore, normalization=normalization,
                                  tops=draw(st.sampled_from([("loss",), ("loss", "rows")])))
        else:
            text = two_way_loss_text(
                axis=axis, ignore_label=ignore, normalization=normalization,
                positive_temperature=option("positive_temperature", [None, 4.0, 0.5], [0.0, -1.0]),
                negative_temperature=option("negative_temperature", [None, 1.0, 2.0], [0.0, -2.0]))
    else:
        if ignore == 2 and draw(st.booleans()):
            ignore = 0  # refused: 0 is a negative class's target
            faults.append("ignore_label 0")
        options = dict(axis=axis, label_smoothing=option("label_smoothing", [0.0, 0.2], [1.0, -0.1]),
                       class_weight=per_class_vector("class_weight"), ignore_label=ignore,
                       normalization=draw(st.sampled_from(NORMALIZATIONS)),
                       target_normalization=draw(st.sampled_from(["COUNT", "SUM", "NONE"])),
                       tops=draw(st.sampled_from([("loss",), ("loss", "prob")])))
        text = multi_label_softmax_loss_text(**options)
    if draw(st.integers(0, 9)) == 0:
        text = text.replace('type:', 'top: "a" top: "b" top: "c" type:', 1)
        faults.append("three tops")

    # Data: scores (any value, NaN and infinities too: defined), targets and
    # weights (data: a NaN, an infinity or a value out of range is refused).
    x = rng.standard_normal(shape) * 3
    if x.size and draw(st.integers(0, 4)) == 0:
        x.flat[draw(st.integers(0, x.size - 1))] = draw(bad_number())
    if layer == SIGMOID_CROSS_ENTROPY_LOSS:
        t = rng.uniform(0, 1, shape)
    else:
        t = (rng.random(shape) < 0.4).astype(np.float64)
    if ignore is not None and t.size:
        t.flat[rng.integers(0, t.size)] = ignore
    if t.size and draw(st.integers(0, 3)) == 0:
        bad = [-0.5, -3.0] + ([1.5] if layer == SIGMOID_CROSS_ENTROPY_LOSS else [])
        bad += [0.5, 3.0] if layer in HARD_TARGET_LOSSES else []  # hard targets only (2 may be ignore_label)
        t.flat[draw(st.integers(0, t.size - 1))] = draw(st.one_of(bad_number(), st.sampled_from(bad)))
        faults.append("target value")
    bottoms = [x, t]
    if layer == SIGMOID_CROSS_ENTROPY_LOSS and draw(st.booleans()):
        w = rng.uniform(0, 2, shape)
        if w.size and draw(st.integers(0, 3)) == 0:
            w.flat[draw(st.integers(0, w.size - 1))] = draw(st.one_of(bad_number(), st.just(-1.0)))
            faults.append("weight value")
        bottoms.append(w)
    # Shapes and blob counts.
    which = draw(st.integers(0, 11))
    if which == 0:
        bottoms = bottoms[:1]
        faults.append("one bottom")
    elif which == 1:
        bottoms = bottoms + [t, t][:4 - len(bottoms)]
        faults.append("too many bottoms")
    elif which == 2:
        bottoms[1] = np.zeros(t.size + 1)
        faults.append("count mismatch")
    elif which == 3 and layer != SIGMOID_CROSS_ENTROPY_LOSS and t.ndim >= 2 and t.shape[0] != t.shape[-1]:
        bottoms[1] = t.reshape(t.shape[::-1])  # the same count, another shape
        faults.append("shape mismatch")
    # Dtypes (run_layer: float32 or float64, all the same).
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    bottoms = [b.astype(dtype) for b in bottoms]
    if not for_net and draw(st.integers(0, 9)) == 0:
        other = draw(st.sampled_from([np.int32, np.float16, np.complex64, np.float64, np.bool_]))
        if np.dtype(other) != np.dtype(dtype):
            with np.errstate(invalid="ignore"):  # NaN to int: any value, still a fault
                bottoms[-1] = bottoms[-1].astype(other)
            faults.append("dtype")
    return layer, text, bottoms, faults


def assert_contract(layer, bottoms, faults, answer, error_classes):
    """With faults: an error of error_classes naming the layer (the harness's
    own argument errors name the argument instead). Without: a value, finite
    where the scores are."""
    if faults:
        assert answer[0] == "raised", "faults %s gave a value, not an error" % faults
        assert answer[1] in error_classes, answer
        harness_level = {"dtype", "huge"} & set(faults)
        if not harness_level:
            assert answer[2].startswith("%s layer '%s'" % (layer, LAYER_NAMES[layer])), answer
        return
    assert answer[0] == "ok", "a valid case raised: %r" % (answer,)
    loss, diff = answer[1]
    assert np.shape(diff) == bottoms[0].shape
    if np.all(np.isfinite(bottoms[0])):
        assert np.isfinite(loss), loss
        assert np.all(np.isfinite(diff))
    if bottoms[0].size == 0:
        assert loss == 0.0


@pytest.mark.parametrize("device", DEVICES)
@given(case=malformed_cases())
def test_malformed_input_through_run_layer(child, device, case):
    layer, text, bottoms, faults = case
    note("%s\nbottoms %s\nfaults %s" % (text, [(b.shape, b.dtype) for b in bottoms], faults))
    answer = answer_of(child, "run_layer", (text, bottoms, device, {}))
    if answer[0] == "ok":
        tops, diffs = answer[1]
        answer = ("ok", (float(tops[0]), diffs[0]))
    assert_contract(layer, bottoms, faults, answer, {"LayerError"})


INPUT_NAMES = ("x", "t", "w", "v")


def input_layers(shapes_by_name):
    return "".join('layer { name: "%s" type: "Input" top: "%s" input_param { shape { %s } } }\n'
                   % (n, n, " ".join("dim: %d" % d for d in shape))
                   for n, shape in shapes_by_name)


def net_text(layer_text, bottoms):
    """A net of Input layers for the bottoms, then the layer (its text
    without bottoms, with a top "loss") on them. force_backward: the inputs
    get gradients, so backward reaches the layer."""
    names = INPUT_NAMES[:len(bottoms)]
    layer = " ".join('bottom: "%s"' % n for n in names) + " " + layer_text
    return ("force_backward: true\n" + input_layers(zip(names, (b.shape for b in bottoms)))
            + "layer { %s }\n" % layer)


@pytest.mark.parametrize("device", DEVICES)
@given(case=malformed_cases(for_net=True))
def test_malformed_input_through_pycaffe_net(child, device, case):
    layer, text, bottoms, faults = case
    # The multi-label, ZLPR and two-way prototxts name their bottoms; net_text names them again.
    text = text.replace('bottom: "x" bottom: "t" ', "")
    bottoms = [b.astype(np.float32) for b in bottoms]
    net = net_text(text, bottoms)
    note(net + "faults %s" % faults)
    answer = answer_of(child, "net", (net, dict(zip(INPUT_NAMES, bottoms)), device))
    assert_contract(layer, bottoms, faults, answer, {"ValueError"})


# ---- shapes too large for a blob: refused before any memory is touched -------

@pytest.mark.parametrize("shape, where", [
    ((2**31,), "INT_MAX"),                 # more than a blob holds
    ((50000, 50000), "INT_MAX"),
    ((429496730, 1), "rows"),              # multi-label: 5 doubles per row in one blob
])
def test_too_large_shapes_through_a_net(child, shape, where):
    layer = (sigmoid_cross_entropy_loss_text() if where == "INT_MAX"
             else multi_label_softmax_loss_text(axis=1)).replace('bottom: "x" bottom: "t" ', "")
    net = (input_layers([("x", shape), ("t", shape)])
           + 'layer { bottom: "x" bottom: "t" %s }\n' % layer)
    # No blob memory is touched: Input and the layer refuse the shape first.
    answer = answer_of(child, "net", (net, {}, "cpu"), in_example=False)
    assert answer[0] == "raised" and answer[1] == "ValueError", answer
    assert where in answer[2] and ("blob" in answer[2]), answer[2]


def test_too_large_shapes_through_run_layer():
    # Refused in Python before any copy: the array has no memory behind it
    # (so it stays in this process; pickling it to the child would copy it).
    huge = np.broadcast_to(np.float32(0), (2**16, 2**15 + 1))
    with pytest.raises(caffe_xent.LayerError, match=r"bottom\[0\] has shape .*INT_MAX"):
        caffe_xent.run_layer(sigmoid_cross_entropy_loss_text(), [huge, huge])


@requires_gpu
def test_gpu_error_leaves_the_device_usable(child):
    # A refused input on the GPU path, then a good one on the same device.
    bad = child.call("run_layer", (multi_label_softmax_loss_text(), [np.zeros((3, 4), np.float32),
                                                       np.full((3, 4), np.nan, np.float32)], "gpu", {}))
    assert bad[:2] == ("raised", "LayerError") and "bottom[1]" in bad[2], bad
    good = child.call("run_layer", (multi_label_softmax_loss_text(), [np.zeros((3, 4), np.float32),
                                                        np.eye(3, 4, dtype=np.float32)], "gpu", {}))
    assert good[0] == "ok", good
