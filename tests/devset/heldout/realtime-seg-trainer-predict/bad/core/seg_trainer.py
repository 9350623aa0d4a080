# Held-out case (evalguard issue 27): shape of zh320/realtime-semantic-segmentation-pytorch PR #4
# ("Call eval on model before inference"): with is_testing set, the trainer loads a checkpoint into
# self.model (built by a registry helper in the base trainer) and predict() runs it on test images;
# validation ran an EMA copy kept in eval mode, so only predict() used the raw model. Written anew.
import os

import torch
import torch.nn.functional as F

from core.base_trainer import BaseTrainer


class SegTrainer(BaseTrainer):
    def __init__(self, config):
        super().__init__(config)
        if config.is_testing:
            ckpt = torch.load(config.load_ckpt_path, map_location="cpu", weights_only=True)
            self.model.load_state_dict(ckpt["state_dict"])

    def train_one_epoch(self, config):
        self.model.train()
        for images, masks in self.train_loader:
            loss = F.cross_entropy(self.model(images.to(self.device)), masks.to(self.device))
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.ema_model.update(self.model)

    @torch.no_grad()
    def validate(self, config):
        for images, masks in self.val_loader:
            preds = self.ema_model.ema(images.to(self.device))
            self.metrics.update(preds.argmax(1), masks.to(self.device))
        return self.metrics.compute()

    @torch.no_grad()
    def predict(self, config):
        os.makedirs(config.save_dir, exist_ok=True)
        for images, names in self.test_loader:
            preds = self.model(images.to(self.device)).argmax(1).cpu()
            for pred, name in zip(preds, names):
                self.save_mask(pred, os.path.join(config.save_dir, name))
