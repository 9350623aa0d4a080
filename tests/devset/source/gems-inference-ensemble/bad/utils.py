import torch
from torch.utils.data import DataLoader


def predict_affinities(model, dataset, batch_size=64):
    outputs = []
    with torch.no_grad():
        for graphs in DataLoader(dataset, batch_size=batch_size):
            outputs.append(model(graphs).view(-1))
    return torch.cat(outputs)
