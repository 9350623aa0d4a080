# Shape of the bug fixed in https://github.com/pytorch/tutorials/pull/2484 (evalguard's own
# words): the language-model tutorial evaluates on the validation split right after each
# training epoch, and the evaluation routine never switches the TransformerEncoder (dropout)
# to eval mode.
import math

import torch
from torch import nn


class TransformerModel(nn.Module):
    def __init__(self, ntoken, d_model=32, nhead=2, dropout=0.2):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, nhead, 64, dropout)
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.embedding = nn.Embedding(ntoken, d_model)
        self.linear = nn.Linear(d_model, ntoken)

    def forward(self, src):
        return self.linear(self.encoder(self.embedding(src) * math.sqrt(32)))


def train(model, data, optimizer, criterion):
    model.train()
    for source, targets in data:
        loss = criterion(model(source).view(-1, 100), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def evaluate(model, eval_data, criterion):
    total = 0.0
    with torch.no_grad():
        for source, targets in eval_data:
            total += criterion(model(source).view(-1, 100), targets).item()
    return total / len(eval_data)


model = TransformerModel(100)
optimizer = torch.optim.SGD(model.parameters(), lr=5.0)
for epoch in range(3):
    train(model, [], optimizer, nn.CrossEntropyLoss())
    print(evaluate(model, [], nn.CrossEntropyLoss()))
