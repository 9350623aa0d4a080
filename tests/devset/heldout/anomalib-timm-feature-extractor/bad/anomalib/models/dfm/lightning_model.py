import pytorch_lightning as pl
import torch

from anomalib.models.dfm.torch_model import DFMModel


class Dfm(pl.LightningModule):
    def __init__(self, backbone="resnet18", layer="layer3"):
        super().__init__()
        self.model = DFMModel(backbone, layer)
        self.embeddings = []

    def configure_optimizers(self):
        return None

    def training_step(self, batch, _batch_idx):
        embedding = self.model.get_features(batch["image"]).squeeze()
        self.embeddings.append(embedding)

    def on_validation_start(self):
        self.model.fit(torch.vstack(self.embeddings))

    def validation_step(self, batch, _batch_idx):
        batch["pred_scores"] = self.model(batch["image"])
        return batch
