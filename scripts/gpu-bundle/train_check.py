"""A short training run of the demo net with each loss, through pycaffe's solver.

    train_check.py --data DIR --iters N [--gpu]

DIR holds the demo's train.h5 and test.h5 (examples/multilabel_digits/
digits_data.py writes them) and sizes.json (the number of images in each). For each loss of
the demo's table (loss_table.py) that this build has, trains the demo's net
with it for N iterations with the demo's solver settings, then scores the
test set with the solver's test net. Prints one JSON line: per loss, the
mean loss of the first and last tenth of the iterations, the test mAP (per
class) and the mAP of uninformed scores (chance), and the seconds; and the losses this build lacks, with the reason.
"""
import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The demo beside this script's folder: the bundle's gpu/ (or, in the
# repository, scripts/gpu-bundle/ two levels below the root).
DEMO = next(d for d in (os.path.join(os.path.dirname(HERE), "examples", "multilabel_digits"),
                        os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples",
                                     "multilabel_digits"))
            if os.path.isdir(d))
sys.path.insert(0, DEMO)

import numpy as np  # noqa: E402

os.environ.setdefault("GLOG_minloglevel", "2")
import caffe  # noqa: E402
from caffe.proto import caffe_pb2  # noqa: E402
from google.protobuf import text_format  # noqa: E402

import loss_table  # noqa: E402  (the demo's)
import metrics  # noqa: E402
from run_demo import TEST_BATCH  # noqa: E402


def list_file(work, data, name):
    """HDF5Data's source: a list naming the .h5 file by its absolute path here."""
    path = os.path.join(work, name + ".txt")
    with open(path, "w") as f:
        f.write(os.path.join(os.path.abspath(data), name + ".h5") + "\n")
    return path


def train_one(work, data, loss, iters, gpu):
    net = loss_table.net_for(caffe_pb2, loss)
    for layer in net.layer:
        if layer.type == "HDF5Data":
            name = os.path.splitext(os.path.basename(layer.hdf5_data_param.source))[0]
            layer.hdf5_data_param.source = list_file(work, data, name)
    net_path = os.path.join(work, "net_%s.prototxt" % loss.name)
    with open(net_path, "w") as f:
        f.write(text_format.MessageToString(net))
    solver = caffe_pb2.SolverParameter()
    with open(os.path.join(DEMO, "solver.prototxt")) as f:
        text_format.Merge(f.read(), solver)
    solver.net = net_path
    solver.max_iter = iters
    solver.snapshot = 0
    solver.snapshot_after_train = False
    solver.test_interval = iters + 1
    solver.display = 0
    solver.solver_mode = caffe_pb2.SolverParameter.GPU if gpu else caffe_pb2.SolverParameter.CPU
    solver_path = os.path.join(work, "solver_%s.prototxt" % loss.name)
    with open(solver_path, "w") as f:
        f.write(text_format.MessageToString(solver))

    run = caffe.get_solver(solver_path)
    losses = []
    start = time.time()
    for _ in range(iters):
        run.step(1)
        losses.append(float(run.net.blobs["loss"].data))
    seconds = time.time() - start

    with open(os.path.join(data, "sizes.json")) as f:
        test_size = json.load(f)["test"]
    test = run.test_nets[0]
    test.share_with(run.net)  # the trained weights (Solver::Test shares them the same way)
    scores, labels = [], []
    for _ in range(test_size // TEST_BATCH):
        test.forward()
        scores.append(test.blobs["score"].data.copy())
        labels.append(test.blobs["label"].data.copy())
    scores, labels = np.concatenate(scores), np.concatenate(labels)
    tenth = max(1, iters // 10)
    return {"iters": iters, "seconds": round(seconds, 2),
            "loss_first": float(np.mean(losses[:tenth])), "loss_last": float(np.mean(losses[-tenth:])),
            "test_images": int(len(labels)),
            "test_map": float(metrics.mean_average_precision(loss_table.class_scores(scores, loss.scores), labels > 0)),
            # the mAP of scores that know nothing: each class's share of positives
            "chance_map": float(np.mean((labels > 0).mean(axis=0)[(labels > 0).any(axis=0)]))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()
    if args.gpu:
        caffe.set_mode_gpu()
        caffe.set_device(0)
    else:
        caffe.set_mode_cpu()
    result = {"device": "GPU" if args.gpu else "CPU", "losses": {}, "not_in_this_build": {}}
    with tempfile.TemporaryDirectory() as work:
        for loss in loss_table.LOSSES:
            reason = loss_table.unavailable(caffe, caffe_pb2, loss)
            if reason:
                result["not_in_this_build"][loss.name] = reason
                continue
            result["losses"][loss.name] = train_one(work, args.data, loss, args.iters, args.gpu)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
