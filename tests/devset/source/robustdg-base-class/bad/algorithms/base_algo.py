# Devset (evalguard): shape of microsoft/robustdg algorithms/base_algo.py -- the base class builds
# the network (self.phi) through an imported factory; subclasses live in other files.
from models.factory import get_model


class BaseAlgo:
    def __init__(self, args, train_dataset, test_dataset):
        self.args = args
        self.train_dataset = train_dataset
        self.test_dataset = test_dataset
        self.phi = get_model(args.model_name, args.out_classes)
