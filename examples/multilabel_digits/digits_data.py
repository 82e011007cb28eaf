"""Multi-label canvases of real handwriting, written in Caffe's HDF5Data format.

Source: scikit-learn's bundled 8x8 digits (1797 images shipped inside the
package, no download). A canvas is a 2x2 grid of 8x8 slots (16x16 pixels);
1 to 3 slots hold a digit, the others stay blank. The label is the multi-hot
set of digits present (a digit drawn twice is still one positive), so an
image has 1 to 3 positives out of 10 classes.

Train and test canvases are composed from disjoint halves of the source
images, so the test set measures generalisation to unseen handwriting, not
to unseen arrangements of seen digits. Everything is drawn from one seeded
generator: the same arguments give the same files, byte for byte.
"""
import os

import numpy as np

NUM_CLASSES = 10
SLOT = 8                  # the source digits are 8x8
GRID = 2                  # 2x2 slots per canvas
SIDE = SLOT * GRID        # 16x16 canvas
MAX_DIGITS = 3
TEST_SOURCE_FRACTION = 0.4


def load_source_digits():
    """The 1797 source digits as float32 images in [0, 1] and their classes."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # pixel values are 0..16
    return images, digits.target.astype(np.int64)


def split_sources(num_sources, rng):
    """Disjoint index sets (train, test) over the source images."""
    order = rng.permutation(num_sources)
    num_test = int(round(num_sources * TEST_SOURCE_FRACTION))
    return np.sort(order[num_test:]), np.sort(order[:num_test])


def compose(images, classes, source_indices, count, rng):
    """`count` canvases (count x 1 x 16 x 16) and multi-hot labels (count x 10)."""
    data = np.zeros((count, 1, SIDE, SIDE), np.float32)
    label = np.zeros((count, NUM_CLASSES), np.float32)
    for n in range(count):
        num_digits = rng.integers(1, MAX_DIGITS + 1)
        slots = rng.choice(GRID * GRID, size=num_digits, replace=False)
        for slot, source in zip(slots, rng.choice(source_indices, size=num_digits)):
            row, col = divmod(int(slot), GRID)
            data[n, 0, row * SLOT:(row + 1) * SLOT, col * SLOT:(col + 1) * SLOT] = images[source]
            label[n, classes[source]] = 1.0
    return data, label


def write_hdf5(directory, name, data, label):
    """Write NAME.h5 and the list file NAME.txt that HDF5Data's `source` reads.

    The list holds the absolute path of the .h5 file: Caffe resolves relative
    paths in it against its working directory, not against the list's.
    """
    import h5py
    os.makedirs(directory, exist_ok=True)
    h5_path = os.path.join(directory, name + ".h5")
    with h5py.File(h5_path, "w") as f:
        f.create_dataset("data", data=data)
        f.create_dataset("label", data=label)
    list_path = os.path.join(directory, name + ".txt")
    with open(list_path, "w") as f:
        f.write(os.path.abspath(h5_path) + "\n")
    return list_path


def make_dataset(directory, train_size, test_size, seed):
    """Compose and write the train and test sets; returns a summary dict."""
    rng = np.random.default_rng(seed)
    images, classes = load_source_digits()
    train_sources, test_sources = split_sources(len(images), rng)
    train = compose(images, classes, train_sources, train_size, rng)
    test = compose(images, classes, test_sources, test_size, rng)
    write_hdf5(directory, "train", *train)
    write_hdf5(directory, "test", *test)
    return {
        "train": train, "test": test,
        "train_sources": train_sources, "test_sources": test_sources,
    }
