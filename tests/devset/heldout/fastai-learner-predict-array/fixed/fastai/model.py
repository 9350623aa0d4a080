import torch


def fit(model, data, epochs, opt, crit):
    for _ in range(epochs):
        model.train()
        for x, y in data.trn_dl:
            loss = crit(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()


def predict_with_targs(model, dl):
    model.eval()
    preds, targs = [], []
    with torch.no_grad():
        for x, y in dl:
            preds.append(model(x))
            targs.append(y)
    return torch.cat(preds), torch.cat(targs)
