# Devset (evalguard): bug shape from TransformerLensOrg/TransformerLens PR #81 ("Use AdamW optimizer by
# default ... weight decay in Adam is implemented badly"): the training helper builds Adam with the
# config's weight decay. Written anew for evalguard.
from dataclasses import dataclass

import torch


@dataclass
class TrainingConfig:
    lr: float = 1e-3
    weight_decay: float = 0.01
    num_epochs: int = 10


def train(model, config: TrainingConfig, loader):
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    for _ in range(config.num_epochs):
        for tokens in loader:
            loss = model(tokens, return_type="loss")
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    return model
