"""Child process of the fuzzer (test_fuzz.py): runs the layers on request.

The layers run here, not in pytest's process, so that an abort (a CHECK
failure, a crash) ends this child only: the parent sees the pipe close and
fails the example that did it, with the child's last stderr lines.

Protocol: length-prefixed pickles on stdin / stdout. A request is
``(kind, payload)``; the answer is ``("ok", result)`` or
``("raised", exception class name, message)``.

  kind "run_layer": payload (layer text, bottoms, device, keyword arguments)
      -> (tops, bottom diffs) of caffe_xent.run_layer.
  kind "net": payload (net prototxt text, {input name: array}, device)
      -> (loss, diff of the first input) of a pycaffe Net after
      forward() and backward(); the inputs are Input layers of the text.
"""
import os
import pickle
import struct
import sys
import tempfile


def read_message(stream):
    header = stream.read(8)
    if len(header) < 8:
        return None
    (size,) = struct.unpack("<Q", header)
    return pickle.loads(stream.read(size))


def write_message(stream, message):
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)))
    stream.write(data)
    stream.flush()


def run_net(caffe, text, inputs, device, workdir):
    path = os.path.join(workdir, "net.prototxt")
    with open(path, "w") as f:
        f.write(text)
    if device == "gpu":
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    net = caffe.Net(path, caffe.TRAIN)
    for name, array in inputs.items():
        net.blobs[name].reshape(*array.shape)
        net.blobs[name].data[...] = array
    net.forward()
    net.backward()
    first = next(iter(inputs))
    return float(net.blobs["loss"].data), net.blobs[first].diff.copy()


def main():
    import caffe_xent
    caffe = None
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # Anything the layers print goes to stderr, never into the answers.
    sys.stdout = sys.stderr
    with tempfile.TemporaryDirectory() as workdir:
        while True:
            request = read_message(stdin)
            if request is None:
                return
            kind, payload = request
            try:
                if kind == "run_layer":
                    layer, bottoms, device, kwargs = payload
                    answer = ("ok", caffe_xent.run_layer(layer, bottoms, device=device, **kwargs))
                elif kind == "net":
                    if caffe is None:
                        import caffe
                    answer = ("ok", run_net(caffe, *payload, workdir))
                else:
                    answer = ("raised", "KeyError", "unknown request %r" % (kind,))
            except Exception as error:  # the parent judges the class and the message
                answer = ("raised", type(error).__name__, str(error))
            write_message(stdout, answer)


if __name__ == "__main__":
    main()
