import argparse

import numpy as np

from dnnbrain.dnn.core import DNN


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-net", default="alexnet")
    parser.add_argument("-layer", nargs="+", default=["conv5"])
    parser.add_argument("-stim", required=True)
    args = parser.parse_args()
    dnn = DNN(args.net)
    acts = dnn.compute_activation(np.load(args.stim), args.layer)
    np.savez("act.npz", **acts)


if __name__ == "__main__":
    main()
