# Devset (evalguard): bug shape from luigibonati/mlcolvar PR #205 ("Moved the dropout layer after the
# normalization -- Dropout will alter the statistics used by batch norm"): the layer list is built
# with append() in a loop, Dropout appended before BatchNorm1d. Written anew for evalguard.
import torch


def get_activation(name):
    return torch.nn.ReLU() if name == "relu" else torch.nn.Tanh()


class FeedForward(torch.nn.Module):
    def __init__(self, layers, activation="relu", dropout=0.1, batchnorm=True):
        super().__init__()
        modules = []
        for i in range(len(layers) - 1):
            modules.append(torch.nn.Linear(layers[i], layers[i + 1]))
            if activation is not None:
                modules.append(get_activation(activation))
            if batchnorm:
                modules.append(torch.nn.BatchNorm1d(layers[i + 1]))
            if dropout is not None:
                modules.append(torch.nn.Dropout(p=dropout))
        self.nn = torch.nn.Sequential(*modules)

    def forward(self, x):
        return self.nn(x)
