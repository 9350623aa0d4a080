import torch
import torch.nn as nn

criterion = nn.BCEWithLogitsLoss()


def train(model, iterator, optimizer):
    model.train()
    for text, lengths, label in iterator:
        optimizer.zero_grad()
        loss = criterion(model(text, lengths), label)
        loss.backward()
        optimizer.step()


def evaluate(model, iterator):
    model.eval()
    with torch.no_grad():
        return sum(criterion(model(text, lengths), label).item() for text, lengths, label in iterator)
