"""The GPU kernels where their faults would show: grid-stride loops past
their first pass, one layer instance across Reshapes, Forward and Backward
on different devices, empty batches, NaN on ignored elements, refused input,
and a solver training in GPU mode.

Each case runs on every device of conftest.DEVICES. The CPU leg runs
everywhere and is held to the independent float64 references
(tests/*_reference.py), so the case itself is checked on a machine without
a GPU; the GPU leg (skipped with its reason without one; the GPU bundle runs
it, docs/gpu.md) is held to the same reference and, in addition, to the CPU
result.

CPU against GPU, float32: each result is within the reference tolerance of
the float64 truth (a few float32 ulp, 2^-24 ~ 6e-8 each, per element; loss
sums taken in double), so the two are within twice that of each other: for
a float32 loss that is within 1e-6 relative, the bound the kernels promise.
"""
import numpy as np
import pytest

import caffe
import caffe_xent
from conftest import DEVICES, DTYPES, GPU_MARKS, requires_gpu
from multi_label_softmax_loss_reference import reference as multi_label_reference
from sigmoid_cross_entropy_loss_reference import layer_text as sigmoid_text
from sigmoid_cross_entropy_loss_reference import reference as sigmoid_reference
from test_multi_label_softmax_loss import BAD as MULTI_LABEL_BAD
from test_multi_label_softmax_loss import as_stored, assert_matches_reference, multi_hot
from test_multi_label_softmax_loss import prototxt as multi_label_text
from test_sigmoid_cross_entropy_loss import BAD as SIGMOID_BAD
from test_sigmoid_cross_entropy_loss import GRAD_RTOL, LOSS_RTOL, check_close, make_inputs, proto_floats

SIGMOID = "SigmoidCrossEntropyLoss"
MULTI_LABEL = "MultiLabelSoftmaxLoss"
# CPU vs GPU loss: each within its reference tolerance (LOSS_RTOL: a few
# ulp of float32, 1e-12 for float64) of the truth, so within twice that of
# each other; for float32 that is the 1e-6 the kernels promise.
CPU_GPU_LOSS_RTOL = {np.float32: 1e-6, np.float64: 2e-12}


# ---- one layer on one device, held to the reference (and on the GPU to the CPU) ----

def sigmoid_case(options, bottoms, device, dtype):
    """Runs SigmoidCrossEntropyLoss (loss and element-loss tops) on `device`;
    checks it against the float64 reference and, on the GPU, against the
    CPU. Returns (loss, element loss, gradient)."""
    text = sigmoid_text(tops=2, **options)
    tops, diffs = caffe_xent.run_layer(text, bottoms, device=device)
    ref_options = dict(proto_floats(options))
    ref_options.setdefault("normalization", "BATCH_SIZE")
    loss, element, grad = sigmoid_reference(*bottoms, **ref_options)
    assert float(tops[0]) == pytest.approx(loss, rel=LOSS_RTOL[dtype], abs=1e-300)
    check_close(tops[1], element, dtype, "element loss on %s" % device)
    check_close(diffs[0], grad, dtype, "gradient on %s" % device)
    if device == "gpu":
        (cpu_loss, cpu_element), (cpu_grad, *_) = caffe_xent.run_layer(text, bottoms, device="cpu")
        assert float(tops[0]) == pytest.approx(float(cpu_loss), rel=CPU_GPU_LOSS_RTOL[dtype], abs=1e-300)
        # Each within check_close's bound of the reference: twice it of each other.
        for name, gpu, cpu, truth in (("element loss", tops[1], cpu_element, element),
                                      ("gradient", diffs[0], cpu_grad, grad)):
            scale = np.max(np.abs(truth)) if truth.size else 1.0
            bound = 2 * 8 * GRAD_RTOL[dtype] * (np.abs(truth) + scale)
            off = ~(np.abs(gpu.astype(np.float64) - cpu) <= bound)
            assert not off.any(), "%s: GPU vs CPU, %d elements off" % (name, off.sum())
    return float(tops[0]), tops[1], diffs[0]


def multi_label_case(options, x, t, device, dtype):
    """Runs MultiLabelSoftmaxLoss on `device`; checks it against the float64
    reference and, on the GPU, against the CPU. Returns (loss, gradient)."""
    x, t = x.astype(dtype), t.astype(dtype)
    text = multi_label_text(**options)
    (loss, *_), (dx, _) = caffe_xent.run_layer(text, [x, t], device=device)
    assert_matches_reference(options, x, t, dtype, loss, dx)
    if device == "gpu":
        (cpu_loss, *_), (cpu_dx, _) = caffe_xent.run_layer(text, [x, t], device="cpu")
        assert float(loss) == pytest.approx(float(cpu_loss), rel=CPU_GPU_LOSS_RTOL[dtype])
        # assert_matches_reference allows 4 eps (float32; 64 eps float64) of
        # the terms' magnitude on each side: twice that between the two.
        eps = np.finfo(dtype).eps * (4 if dtype == np.float32 else 64)
        _, _, magnitude = multi_label_reference(x, t, **as_stored(options))
        assert np.all(np.abs(dx.astype(np.float64) - cpu_dx) <= 2 * eps * magnitude)
    return float(loss), dx


# ---- grid-stride loops beyond their first pass ---------------------------------
# The sigmoid forward runs a fixed grid of 1024 blocks of 256 threads (2^18
# threads), the gradient kernels at most 65535 blocks; the multi-label
# forward one block per row for long rows (at most 1024 blocks) and one
# thread per row for short ones. Each shape below needs several passes of
# every loop it reaches, and is cheap enough for the CPU leg on 2 cores.

@pytest.mark.parametrize("device", DEVICES)
def test_sigmoid_past_the_first_grid_pass_with_every_per_element_option(device, rng):
    # C x inner = 3 x 349526 > 2^20 elements per item, 2.1M in all: per-class
    # weights and pos_weight, ignored elements and the weights bottom.
    shape = (2, 3, 349526)
    dtype = np.float32
    options = {"class_weight": [0.5, 1.75, 1.25], "pos_weight": [2.0, 0.75, 1.5],
               "ignore_label": -1, "normalization": "VALID"}
    bottoms = make_inputs(rng, shape, dtype, ignore=True, weights=True)
    loss, element, grad = sigmoid_case(options, bottoms, device, dtype)
    # The far end of the blob is reached (not a first pass only).
    tail = bottoms[1][1, 2, -1000:] != -1
    assert np.all(element[1, 2, -1000:][tail] > 0) and np.all(grad[1, 2, -1000:][~tail] == 0)


MULTI_LABEL_LONG_LOOPS = {
    # More rows than blocks of the row-per-block forward (rows > 1024, C >= 32).
    "rows > 1024, C = 40": ((4096, 40), {"label_smoothing": 0.1, "ignore_label": -1}),
    # More spatial rows than threads of one pass of the row-per-thread forward
    # (2 x 512 x 300 = 307200 > 2^18 rows of 3 classes).
    "spatial rows > 2^18": ((2, 3, 512, 300), {"target_normalization": "SUM",
                                               "class_weight": [0.5, 2.0, 1.0]}),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(MULTI_LABEL_LONG_LOOPS))
def test_multi_label_past_the_first_grid_pass(case, dtype, device, rng):
    shape, options = MULTI_LABEL_LONG_LOOPS[case]
    x = rng.standard_normal(shape) * 3
    t = multi_hot(rng, shape, 1)
    if "ignore_label" in options:
        t[-3::-97, 5] = -1  # ignored rows spread over the batch, the last pass included
    multi_label_case(options, x, t, device, dtype)


# ---- pycaffe nets: one layer instance, its devices switched by Caffe's mode ----

NET = """
force_backward: true
layer { name: "x" type: "Input" top: "x" input_param { shape { %(dims)s } } }
layer { name: "t" type: "Input" top: "t" input_param { shape { %(dims)s } } }
layer { %(layer)s }
"""
# Both layers with ignore_label -1 (and otherwise options whose value does
# not depend on the number of classes: the nets change it).
NET_OPTIONS = {
    SIGMOID: {"pos_weight": [2.5], "focal_gamma": 2.0, "ignore_label": -1, "normalization": "VALID"},
    MULTI_LABEL: {"label_smoothing": 0.1, "ignore_label": -1},
}


def layer_on_x_and_t(layer, options):
    """The layer's text, bottoms x and t, top "loss"."""
    if layer == SIGMOID:
        return 'bottom: "x" bottom: "t" ' + sigmoid_text(**options)
    return multi_label_text(**options)  # names its bottoms x and t


def set_mode(device):
    caffe.set_mode_gpu() if device == "gpu" else caffe.set_mode_cpu()


def make_net(tmp_path, layer, shape, options=None):
    path = tmp_path / ("%s.prototxt" % layer)
    options = NET_OPTIONS[layer] if options is None else options
    path.write_text(NET % {"dims": " ".join("dim: %d" % d for d in shape),
                           "layer": layer_on_x_and_t(layer, options)})
    return caffe.Net(str(path), caffe.TRAIN)


def net_inputs(layer, shape, rng):
    """Scores and targets for the net's layer, a few ignored (elements for
    the sigmoid, rows for the multi-label layer)."""
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    if layer == SIGMOID:
        t = make_inputs(rng, shape, np.float32, ignore=True)[1]
    else:
        t = multi_hot(rng, shape, 1).astype(np.float32)
        if t.size:
            t.reshape(shape[0], shape[1], -1)[::3, 0, ::2] = -1
    return x, t


def check_against_reference(layer, x, t, loss, dx, where):
    """A net's float32 loss and gradient against the float64 reference."""
    options = NET_OPTIONS[layer]
    if layer == SIGMOID:
        ref_loss, _, grad = sigmoid_reference(x, t, **proto_floats(options))
        assert loss == pytest.approx(ref_loss, rel=LOSS_RTOL[np.float32], abs=1e-300), where
        check_close(dx, grad, np.float32, where)
    else:
        assert_matches_reference(options, x, t, np.float32, np.float32(loss), dx)


def forward_backward(net, x, t, forward_device, backward_device):
    """One Forward on one device and Backward on another (Caffe's mode is
    read by each layer call); returns the loss and a copy of x's gradient."""
    for name in ("x", "t"):
        net.blobs[name].reshape(*x.shape)
    net.blobs["x"].data[...] = x
    net.blobs["t"].data[...] = t
    set_mode(forward_device)
    loss = float(net.forward()["loss"])
    set_mode(backward_device)
    net.backward()
    return loss, net.blobs["x"].diff.copy()


# Larger, smaller, empty, a different number of classes, larger again (the
# scratch memory grown on Reshape must be grown again after the shrink).
RESHAPES = [(4, 5, 3), (16, 5, 2000), (2, 5, 7), (0, 5, 7), (3, 11, 13), (8, 11, 5000),
            (5, 2, 1)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layer", [SIGMOID, MULTI_LABEL])
def test_one_layer_instance_across_reshapes(layer, device, tmp_path, rng):
    # run_layer builds a new layer per call; a Net keeps one instance, and
    # a Forward reshapes it to its bottoms.
    set_mode(device)
    net = make_net(tmp_path, layer, RESHAPES[0])
    try:
        for shape in RESHAPES:
            x, t = net_inputs(layer, shape, rng)
            loss, dx = forward_backward(net, x, t, device, device)
            assert dx.shape == shape
            if not x.size:
                assert loss == 0.0, "an empty batch gives loss 0 (%s)" % device
                continue
            check_against_reference(layer, x, t, loss, dx, "%s after reshape to %s on %s"
                                    % (layer, shape, device))
            if device == "gpu":  # the same data through a fresh layer on the CPU
                fresh = make_net(tmp_path, layer, shape)
                cpu_loss, cpu_dx = forward_backward(fresh, x, t, "cpu", "cpu")
                assert loss == pytest.approx(cpu_loss, rel=CPU_GPU_LOSS_RTOL[np.float32])
                set_mode(device)
    finally:
        caffe.set_mode_cpu()


DEVICE_PAIRS = [
    pytest.param("cpu", "cpu", id="forward-cpu-backward-cpu"),
    pytest.param("cpu", "gpu", id="forward-cpu-backward-gpu", marks=GPU_MARKS),
    pytest.param("gpu", "cpu", id="forward-gpu-backward-cpu", marks=GPU_MARKS),
]


@pytest.mark.parametrize("forward_device, backward_device", DEVICE_PAIRS)
@pytest.mark.parametrize("layer", [SIGMOID, MULTI_LABEL])
def test_forward_on_one_device_backward_on_the_other(layer, forward_device, backward_device,
                                                     tmp_path, rng):
    # What Forward leaves for Backward (the multi-label probabilities and
    # row coefficients, the sigmoid's normalizer) must reach the other
    # device through Caffe's synced memory, not stay in host- or device-only
    # state. Two shapes: the second makes the layer reshape between them.
    caffe.set_mode_cpu()
    net = make_net(tmp_path, layer, (8, 6, 50))
    try:
        for shape in ((8, 6, 50), (3, 40, 7)):
            x, t = net_inputs(layer, shape, rng)
            loss, dx = forward_backward(net, x, t, forward_device, backward_device)
            check_against_reference(layer, x, t, loss, dx, "%s forward on %s, backward on %s"
                                    % (layer, forward_device, backward_device))
    finally:
        caffe.set_mode_cpu()


# Options under which a float32 CPU Forward in a TRAIN net writes x's
# gradient itself (no ignore_label with VALID), so a CPU Backward may take
# it as it is: it must not after a Forward on the GPU with other data.
DIFF_IN_FORWARD_OPTIONS = {SIGMOID: {"pos_weight": [2.5]}, MULTI_LABEL: {"label_smoothing": 0.1}}


@pytest.mark.parametrize("second_device", DEVICES)
@pytest.mark.parametrize("layer", [SIGMOID, MULTI_LABEL])
def test_cpu_backward_after_a_second_forward_takes_the_second_data(layer, second_device,
                                                                   tmp_path, rng):
    shape = (6, 5, 40)
    options = DIFF_IN_FORWARD_OPTIONS[layer]
    caffe.set_mode_cpu()
    net = make_net(tmp_path, layer, shape, options)
    try:
        first, second = [((rng.standard_normal(shape) * 3).astype(np.float32),
                          multi_hot(rng, shape, 1).astype(np.float32)) for _ in range(2)]
        net.blobs["x"].data[...], net.blobs["t"].data[...] = first
        net.forward()  # on the CPU: may leave the first data's gradient in x's diff
        net.blobs["x"].data[...], net.blobs["t"].data[...] = second
        set_mode(second_device)
        loss = float(net.forward()["loss"])
        caffe.set_mode_cpu()
        net.backward()
        x, t = second
        if layer == SIGMOID:
            ref_loss, _, grad = sigmoid_reference(x, t, **proto_floats(options))
            assert loss == pytest.approx(ref_loss, rel=LOSS_RTOL[np.float32])
            check_close(net.blobs["x"].diff, grad, np.float32, "second forward on %s" % second_device)
        else:
            assert_matches_reference(options, x, t, np.float32, np.float32(loss),
                                     net.blobs["x"].diff.copy())
    finally:
        caffe.set_mode_cpu()


# ---- a NaN score on an ignored element or row --------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_nan_score_on_an_ignored_element(dtype, device, rng):
    # Ignored: loss 0 and gradient 0 there, whatever the score; the rest as
    # the reference has it (computed with the NaN replaced: it takes no part).
    shape = (4, 7, 33)
    x, t = make_inputs(rng, shape, dtype)
    t[1, 2, 3] = t[3, 6, 32] = -1
    x[1, 2, 3] = x[3, 6, 32] = np.nan
    options = {"ignore_label": -1, "normalization": "VALID", "focal_gamma": 2.0,
               "class_weight": [float(v) for v in np.arange(1, 8) / 4]}
    tops, diffs = caffe_xent.run_layer(sigmoid_text(tops=2, **options), [x, t], device=device)
    assert np.isfinite(tops[0]) and np.all(np.isfinite(diffs[0]))
    assert tops[1][1, 2, 3] == 0 and tops[1][3, 6, 32] == 0
    assert diffs[0][1, 2, 3] == 0 and diffs[0][3, 6, 32] == 0
    sigmoid_case(options, [np.nan_to_num(x, nan=0.0), t], device, dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 40), (2, 3, 17, 5)], ids=str)
def test_multi_label_nan_score_in_an_ignored_row(shape, dtype, device, rng):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    t = multi_hot(rng, shape, 1).astype(dtype)
    # Row 1 (at the first spatial position): its class 0 is ignore_label,
    # so the whole row is ignored, and its class 2 score is NaN.
    row = (1, slice(None)) + (0,) * (len(shape) - 2)
    t[row][0] = -1
    x[row][2] = np.nan
    options = {"ignore_label": -1, "normalization": "VALID"}
    (loss, *_), (dx, _) = caffe_xent.run_layer(multi_label_text(**options), [x, t], device=device)
    assert np.isfinite(loss) and np.all(np.isfinite(dx))
    assert np.all(dx[row] == 0)
    multi_label_case(options, np.nan_to_num(x, nan=0.0), t, device, dtype)


# ---- refused input on the GPU: the CPU's message, and the process goes on ----------

def bad_cases():
    x = np.random.default_rng(3).standard_normal((2, 4, 3))
    t = np.random.default_rng(4).uniform(size=(2, 4, 3))
    w = np.random.default_rng(5).uniform(0.1, 1, size=(2, 4, 3))
    for name, text, make, _ in SIGMOID_BAD:
        yield pytest.param(text, make(x, t, w), {}, True, id="%s: %s" % (SIGMOID, name))
    for name in sorted(MULTI_LABEL_BAD):
        text, bottoms, kwargs, _ = MULTI_LABEL_BAD[name]
        yield pytest.param(text, bottoms, kwargs, True, id="%s: %s" % (MULTI_LABEL, name))
    # Non-finite scores are data, not errors: the same values on both devices
    # (the limits at +-inf, NaN from a NaN score).
    scores = np.array([[np.inf, -np.inf, 0.5, np.nan], [1.0, -2.0, 3.0, 0.0]])
    targets = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
    for layer, text in ((SIGMOID, sigmoid_text(tops=2)), (MULTI_LABEL, multi_label_text())):
        yield pytest.param(text, [scores, targets], {}, False, id="%s: non-finite scores" % layer)


@requires_gpu  # the CPU's refusals are tested by each layer's own file; here the GPU's must equal them
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("text, bottoms, kwargs, refused", list(bad_cases()))
def test_gpu_refuses_what_the_cpu_refuses_with_the_same_message(text, bottoms, kwargs, refused, dtype,
                                                                rng):
    bottoms = [b.astype(dtype) for b in bottoms]

    def outcome(device):
        try:
            tops, diffs = caffe_xent.run_layer(text, bottoms, device=device, **kwargs)
        except caffe_xent.LayerError as error:
            return "LayerError: %s" % error
        return [np.asarray(a) for a in tops + diffs if a is not None]

    cpu, gpu = outcome("cpu"), outcome("gpu")
    assert isinstance(cpu, str) == refused, cpu
    if refused:
        assert gpu == cpu
    else:
        assert not isinstance(gpu, str), gpu
        assert len(gpu) == len(cpu)
        # Each within 4 ulp of the truth at these few O(1) values (the
        # layers' own extreme-value tests): 8 of each other.
        for c, g in zip(cpu, gpu):
            np.testing.assert_array_equal(np.isnan(g), np.isnan(c))
            np.testing.assert_allclose(g, c, rtol=8 * np.finfo(dtype).eps, atol=1e-30)
    # The process and the device go on: a good input right after, on the GPU.
    x, t = make_inputs(rng, (3, 4, 5), dtype)
    sigmoid_case({}, [x, t], "gpu", dtype)
    multi_label_case({}, x, multi_hot(rng, x.shape, 1), "gpu", dtype)


# ---- a pycaffe solver: Caffe's GPU loss path trains as the CPU's does ---------------

SOLVER_NET = """
force_backward: true
layer { name: "data" type: "Input" top: "data" top: "t"
        input_param { shape { dim: %(n)d dim: %(k)d } shape { dim: %(n)d dim: %(c)d } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "x"
        inner_product_param { num_output: %(c)d } }
layer { %(loss)s }
"""
# Per loss: its options, and the largest eigenvalue h of one row's loss
# Hessian in its scores: (p t + 1 - t) s (1 - s) <= max(1, p) / 4 per
# element for the sigmoid with pos_weight p; Q (diag(p) - p p^T) for the
# softmax loss, whose rows sum (Gershgorin) to 2 p_c (1 - p_c) <= 1/2, with
# Q = 1 (COUNT targets, every row with a positive).
SOLVER_LOSSES = {
    SIGMOID: ({"pos_weight": [2.0], "normalization": "BATCH_SIZE"}, 2.0 / 4),
    MULTI_LABEL: ({"normalization": "VALID"}, 0.5),
}


def reference_gradient(layer, fc, label):
    """Float64 loss, d loss / d fc, and the bound of a float32 layer's
    rounding of d loss / d fc per element (the layer tests' bound)."""
    options, _ = SOLVER_LOSSES[layer]
    if layer == SIGMOID:
        loss, _, grad = sigmoid_reference(fc, label, **proto_floats(options))
        scale = np.max(np.abs(grad))
        return loss, grad, 8 * GRAD_RTOL[np.float32] * (np.abs(grad) + scale)
    loss, grad, magnitude = multi_label_reference(fc, label, **options)
    return loss, grad, 4 * np.finfo(np.float32).eps * magnitude


def solver_for(tmp_path, layer, device, n, k, c, lr):
    net_file = tmp_path / ("solver_net_%s.prototxt" % device)
    net_file.write_text(SOLVER_NET % {"n": n, "k": k, "c": c,
                                      "loss": layer_on_x_and_t(layer, SOLVER_LOSSES[layer][0])})
    solver_file = tmp_path / ("solver_%s.prototxt" % device)
    solver_file.write_text('net: "%s"\nbase_lr: %r\nlr_policy: "fixed"\nmomentum: 0\n'
                           'max_iter: 100000\ndisplay: 0\nsnapshot_after_train: false\n' % (net_file, lr))
    set_mode(device)
    return caffe.SGDSolver(str(solver_file))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layer", [SIGMOID, MULTI_LABEL])
def test_solver_trains_as_the_float64_gradient_descent(layer, device, tmp_path, rng):
    """Plain gradient descent (no momentum) of a linear layer under the
    loss, 40 steps on one batch, in Caffe's float32 on `device`, against the
    same descent in float64 from the same start.

    The bound on the parameters' distance, from the math:
    - the loss is convex in the parameters theta = [W, b], its Hessian at
      most lambda = h * ||[X, 1]||_2^2 / N (h: the largest eigenvalue of one
      row's loss Hessian in its scores; N the normalizer), so with
      lr * lambda <= 2 a step theta - lr * grad is non-expansive: a
      difference is never amplified, only added to;
    - what one float32 step adds, against the exact step from the same
      theta: the scores fc = X W^T + b (gamma_(K+1) * |[X, 1]| |theta|^T per
      element, moving the gradient by at most h / N times that), the
      layer's own rounding of d loss / d fc (the layer tests' bound), the
      products X^T dfc and the bias sum (gamma_N * |[X, 1]|^T |dfc|), and
      the update's two roundings (u |theta_next| + u lr |g|), with
      gamma_n = n u / (1 - n u), u = 2^-24;
    - the GPU leg is held to the CPU's descent as well: two float32
      descents, each within the bound of the exact one: twice the bound.
    The bound is first order in u (products of rounding errors dropped).
    """
    n, k, c, steps = 64, 12, 6, 100
    _, h = SOLVER_LOSSES[layer]
    x = rng.standard_normal((n, k)).astype(np.float32)
    truth = rng.standard_normal((k, c))
    scores = x.astype(np.float64) @ truth
    if layer == SIGMOID:
        label = (scores > 0.5).astype(np.float32)
    else:
        label = (scores >= np.sort(scores, axis=1)[:, [-2]]).astype(np.float32)  # top 2
    x1 = np.hstack([x.astype(np.float64), np.ones((n, 1))])
    lam = h * np.linalg.norm(x1, 2) ** 2 / n
    lr = float(np.float32(1.5 / lam))  # lr * lambda = 1.5 <= 2: non-expansive steps
    w0 = (rng.standard_normal((c, k)) * 0.1).astype(np.float32)
    b0 = (rng.standard_normal(c) * 0.1).astype(np.float32)

    u = 2.0 ** -24
    gamma = lambda m: m * u / (1 - m * u)  # noqa: E731

    # The float64 descent, and what each float32 step may add to the distance.
    theta = np.hstack([w0, b0[:, None]]).astype(np.float64)  # (c, k + 1)
    bound, losses64 = 0.0, []
    for step in range(steps):
        fc = x1 @ theta.T
        loss, dfc, layer_error = reference_gradient(layer, fc, label)
        losses64.append(loss)
        g = dfc.T @ x1
        fc_error = gamma(k + 1) * (np.abs(x1) @ np.abs(theta).T)
        if step == 0:  # the first loss: the layer's own error, and the scores' moved through dloss/dfc
            first_loss_bound = LOSS_RTOL[np.float32] * loss + np.sum(np.abs(dfc) * fc_error)
        g_error = (np.linalg.norm(x1, 2) * (h / n * np.linalg.norm(fc_error) + np.linalg.norm(layer_error))
                   + gamma(n) * np.linalg.norm(np.abs(dfc).T @ np.abs(x1)))
        theta = theta - lr * g
        bound += lr * g_error + u * (np.linalg.norm(theta) + lr * np.linalg.norm(g))
    assert losses64[-1] < 0.6 * losses64[0], losses64[::20]  # the case trains

    def descend(dev):
        solver = solver_for(tmp_path, layer, dev, n, k, c, lr)
        solver.net.params["fc"][0].data[...] = w0
        solver.net.params["fc"][1].data[...] = b0
        solver.net.blobs["data"].data[...] = x
        solver.net.blobs["t"].data[...] = label
        first = float(solver.net.forward()["loss"])
        solver.step(steps)
        params = np.hstack([solver.net.params["fc"][0].data, solver.net.params["fc"][1].data[:, None]])
        return first, params.astype(np.float64)

    try:
        first, params = descend(device)
        assert abs(first - losses64[0]) <= first_loss_bound, (first, losses64[0], first_loss_bound)
        distance = np.linalg.norm(params - theta)
        assert distance <= bound, (distance, bound)
        if device == "gpu":
            cpu_first, cpu_params = descend("cpu")
            assert abs(first - cpu_first) <= 2 * first_loss_bound
            assert np.linalg.norm(params - cpu_params) <= 2 * bound
    finally:
        caffe.set_mode_cpu()
