# Devset (evalguard): bug shape from tyiannak/deep_audio_features PR #28 ("including model.eval() at
# test function"): a test() helper next to the training code gets the model as a parameter and
# never switches it to eval mode. Written anew for evalguard.
import numpy as np
import torch


def train(model, dataloader, optimizer, criterion):
    model.train()
    for inputs, labels in dataloader:
        loss = criterion(model(inputs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test(model, dataloader, cnn=False):
    preds, targets = [], []
    with torch.no_grad():
        for inputs, labels in dataloader:
            if cnn:
                inputs = inputs.unsqueeze(1)
            output = model(inputs)
            preds.append(output.argmax(dim=1).numpy())
            targets.append(labels.numpy())
    return np.concatenate(preds), np.concatenate(targets)
