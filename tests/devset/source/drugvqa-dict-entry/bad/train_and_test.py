# Shape of the bug in https://github.com/prokia/drugVQA/issues/7 (evalguard's own words):
# the arguments travel in a dict, the test routine takes the model out of it and never
# switches it to eval mode although it holds BatchNorm2d layers.
import torch


def train(args):
    model = args["model"]
    for epoch in range(args["epochs"]):
        for x, y in args["train_loader"]:
            loss = args["criterion"](model(x), y)
            args["optimizer"].zero_grad()
            loss.backward()
            args["optimizer"].step()
        results = test({"model": model, "loader": args["test_loader"]})
    return results


def test(args):
    model = args["model"]
    scores = []
    with torch.no_grad():
        for x, y in args["loader"]:
            scores.append(model(x))
    return scores
