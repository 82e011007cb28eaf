"""Multi-label canvases of real handwriting, written in Caffe's HDF5Data format.

Source: scikit-learn's bundled 8x8 digits (1797 images shipped inside the
package, no download). A canvas is a 3x3 grid of 8x8 slots (24x24 pixels);
2 to 6 slots hold a digit, the others stay blank.

The task is built to be hard in the three ways real multi-label data is:

- Many labels per image. A class is a digit *in a row* of the grid:
  "a 3 in the top row" is one of 30 classes (10 digits x 3 rows), so an image
  has up to 6 positives (a digit drawn twice in one row is still one).
- Long-tailed class frequencies. Which digit fills a slot is drawn from a
  Zipf-like law: digit d has weight 1 / (d + 1)^ZIPF_EXPONENT, so 0 is about
  30 times as frequent as 9 and the (digit, row) classes of 7, 8 and 9 are
  rare (see class_frequencies()).
- Missing positive labels. In the training labels only, a fraction of the
  positives (MISSING_FRACTION of them, chosen uniformly) is set to 0, as in
  partially annotated data: a digit can be on the canvas without its label.
  The test labels are complete.

Train and test canvases are composed from disjoint sets of the source images
(60 % / 40 %), so the test set measures generalisation to unseen handwriting,
not to unseen arrangements of seen digits. Everything is drawn from one
seeded generator: the same arguments give the same files, byte for byte.
"""
import os

import numpy as np

NUM_DIGITS = 10
SLOT = 8                  # the source digits are 8x8
GRID = 3                  # 3x3 slots per canvas
SIDE = SLOT * GRID        # 24x24 canvas
NUM_CLASSES = NUM_DIGITS * GRID  # a digit in a row
MIN_DIGITS = 2
MAX_DIGITS = 6
ZIPF_EXPONENT = 1.5
MISSING_FRACTION = 0.3    # of the training positives, dropped from the labels
TEST_SOURCE_FRACTION = 0.4


def class_index(digit, row):
    """The class "digit `digit` somewhere in row `row`" (row 0 is the top)."""
    return row * NUM_DIGITS + digit


def class_name(index):
    row, digit = divmod(int(index), NUM_DIGITS)
    return f"{digit}@{('top', 'middle', 'bottom')[row]}"


def digit_probabilities(exponent=ZIPF_EXPONENT):
    """P(a filled slot shows digit d), proportional to 1 / (d + 1)^exponent."""
    weights = 1.0 / np.arange(1, NUM_DIGITS + 1, dtype=np.float64) ** exponent
    return weights / weights.sum()


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


def compose(images, classes, source_indices, count, rng, exponent=ZIPF_EXPONENT):
    """`count` canvases (count x 1 x 24 x 24) and complete multi-hot labels (count x 30).

    Each filled slot draws its digit from digit_probabilities(), then one
    source image of that digit among `source_indices`.
    """
    by_digit = [source_indices[classes[source_indices] == d] for d in range(NUM_DIGITS)]
    probabilities = digit_probabilities(exponent)
    data = np.zeros((count, 1, SIDE, SIDE), np.float32)
    label = np.zeros((count, NUM_CLASSES), np.float32)
    for n in range(count):
        num_digits = rng.integers(MIN_DIGITS, MAX_DIGITS + 1)
        slots = rng.choice(GRID * GRID, size=num_digits, replace=False)
        for slot, digit in zip(slots, rng.choice(NUM_DIGITS, size=num_digits, p=probabilities)):
            row, col = divmod(int(slot), GRID)
            source = rng.choice(by_digit[digit])
            data[n, 0, row * SLOT:(row + 1) * SLOT, col * SLOT:(col + 1) * SLOT] = images[source]
            label[n, class_index(digit, row)] = 1.0
    return data, label


def drop_positives(label, fraction, rng):
    """A copy of `label` with round(fraction x positives) of its 1s, chosen uniformly, set to 0."""
    observed = label.copy()
    positives = np.flatnonzero(observed)
    dropped = rng.choice(positives, size=int(round(fraction * positives.size)), replace=False)
    observed.flat[dropped] = 0.0
    return observed


def class_frequencies(label):
    """Fraction of images holding each class."""
    return np.asarray(label, np.float64).mean(axis=0)


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


def make_dataset(directory, train_size, test_size, seed, missing_fraction=MISSING_FRACTION,
                 exponent=ZIPF_EXPONENT):
    """Compose and write the train and test sets; returns a summary dict.

    "train" holds the labels the net is trained on (with positives missing),
    "train_complete" the same canvases with every label, "test" complete labels.
    """
    if not 0 <= missing_fraction < 1:
        raise ValueError(f"missing_fraction must be in [0, 1), not {missing_fraction}")
    rng = np.random.default_rng(seed)
    images, classes = load_source_digits()
    train_sources, test_sources = split_sources(len(images), rng)
    train_data, train_complete = compose(images, classes, train_sources, train_size, rng, exponent)
    test = compose(images, classes, test_sources, test_size, rng, exponent)
    train_observed = drop_positives(train_complete, missing_fraction, rng)
    write_hdf5(directory, "train", train_data, train_observed)
    write_hdf5(directory, "test", *test)
    return {
        "train": (train_data, train_observed), "train_complete": train_complete, "test": test,
        "train_sources": train_sources, "test_sources": test_sources,
    }
