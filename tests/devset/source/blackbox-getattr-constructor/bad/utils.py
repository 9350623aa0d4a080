# Shape of the bug in https://github.com/cg563/simple-blackbox-attack/issues/4 (evalguard's own words):
# the helper runs whatever network the attack script passes, in the mode it arrives in.
import torch


def get_preds(model, images, batch_size=32):
    preds = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            output = model(images[start:start + batch_size])
            preds.append(output.argmax(1))
    return torch.cat(preds)
