# Devset (evalguard): bug shape from pliang279/MultiBench issue #26 ("model.eval() is called, and a
# few lines later, model.train() is called" before validating; fixed by removing that train()):
# order matters, the last switch before the validation forward is train(). Written anew.
import torch


def train(model, train_dataloader, valid_dataloader, epochs, optimizer, criterion):
    for epoch in range(epochs):
        model.train()
        for x, y in train_dataloader:
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            total_loss, count = 0.0, 0
            model.train()
            for x, y in valid_dataloader:
                out = model(x)
                total_loss += criterion(out, y).item() * len(y)
                count += len(y)
        print("epoch", epoch, "valid loss", total_loss / count)
