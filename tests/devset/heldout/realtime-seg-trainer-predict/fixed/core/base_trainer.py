import torch

from models import get_model
from utils import ModelEma


class BaseTrainer:
    def __init__(self, config):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = get_model(config).to(self.device)
        self.ema_model = ModelEma(self.model)
        self.train_loader = self.val_loader = self.test_loader = []
        self.optimizer = None
        self.metrics = None

    def run(self, config):
        if config.is_testing:
            self.predict(config)
            return
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr)
        for _ in range(config.epochs):
            self.train_one_epoch(config)
            self.validate(config)

    def save_mask(self, pred, path):
        torch.save(pred, path)
