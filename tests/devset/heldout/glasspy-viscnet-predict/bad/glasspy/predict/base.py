import pytorch_lightning as pl
import torch
from torch import nn


def _gen_architecture(hparams):
    """Hidden stack from hyperparameters: per layer, optional BatchNorm1d and Dropout."""
    layers, dim = [], hparams["n_features"]
    for n in range(1, hparams.get("num_layers", 1) + 1):
        size = int(hparams.get(f"layer_{n}_size", 10))
        block = [nn.Linear(dim, size)]
        if hparams.get(f"layer_{n}_batchnorm", False):
            block.append(nn.BatchNorm1d(size))
        dropout = hparams.get(f"layer_{n}_dropout", False)
        if dropout:
            block.append(nn.Dropout(dropout))
        block.append(nn.Tanh())
        layers.append(nn.Sequential(*block))
        dim = size
    return nn.Sequential(*layers)


class MLP(pl.LightningModule):
    def __init__(self, hparams):
        super().__init__()
        self.save_hyperparameters(hparams)
        self.hidden_layers = _gen_architecture(hparams)
        self.output_layer = nn.Linear(int(hparams.get(f"layer_{hparams.get('num_layers', 1)}_size", 10)),
                                      hparams["n_outputs"])

    def forward(self, x):
        return self.output_layer(self.hidden_layers(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)
