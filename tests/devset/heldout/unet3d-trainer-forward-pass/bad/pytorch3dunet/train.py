import torch

from pytorch3dunet.unet3d.model import get_model
from pytorch3dunet.unet3d.trainer import UNet3DTrainer


def main(config, loaders):
    model = get_model(config["model"])
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    trainer = UNet3DTrainer(model, optimizer, torch.nn.BCEWithLogitsLoss(),
                            lambda out, tgt: ((out > 0) == (tgt > 0.5)).float().mean(), loaders)
    trainer.fit()
